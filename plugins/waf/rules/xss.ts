import type { Value } from '../normalize.ts'
import { alternation, found, pattern, type ValueRule } from '../rule.ts'

/**
 * Cross-site scripting. Rules read the value as a browser would after
 * percent and entity decoding, NFKC and case folding (`js` also undoes
 * JavaScript escapes; `compact` drops the whitespace browsers ignore inside a
 * URL scheme). They look for what makes markup or script run — a script tag,
 * an event handler in a tag or after an attribute break-out, a `javascript:`
 * URL where a URL goes, a string break-out into a call — so text with `<`, `>`
 * and quotes in it, or HTML without active content, passes at PL1.
 */

/** DOM event handler names payloads use; PL2 accepts any `on…=`. */
const EVENTS = [
  'abort', 'activate', 'afterprint', 'afterscriptexecute', 'animationcancel', 'animationend', 'animationiteration',
  'animationstart', 'auxclick', 'beforeactivate', 'beforecopy', 'beforecut', 'beforedeactivate', 'beforeinput',
  'beforepaste', 'beforeprint', 'beforescriptexecute', 'beforetoggle', 'beforeunload', 'begin', 'blur', 'bounce',
  'canplay', 'canplaythrough', 'change', 'click', 'close', 'contextmenu', 'copy', 'cuechange', 'cut', 'dblclick',
  'drag', 'dragend', 'dragenter', 'dragexit', 'dragleave', 'dragover', 'dragstart', 'drop', 'durationchange', 'end',
  'ended', 'error', 'finish', 'focus', 'focusin', 'focusout', 'formdata', 'fullscreenchange', 'hashchange', 'input',
  'invalid', 'keydown', 'keypress', 'keyup', 'load', 'loadeddata', 'loadedmetadata', 'loadend', 'loadstart',
  'message', 'mousedown', 'mouseenter', 'mouseleave', 'mousemove', 'mouseout', 'mouseover', 'mouseup',
  'mousewheel', 'offline', 'online', 'pagehide', 'pageshow', 'paste', 'pause', 'play', 'playing', 'pointercancel',
  'pointerdown', 'pointerenter', 'pointerleave', 'pointermove', 'pointerout', 'pointerover', 'pointerrawupdate',
  'pointerup', 'popstate', 'progress', 'propertychange', 'ratechange', 'readystatechange', 'repeat', 'reset',
  'resize', 'scroll', 'scrollend', 'search', 'securitypolicyviolation', 'seeked', 'seeking', 'select',
  'selectionchange', 'selectstart', 'show', 'stalled', 'start', 'storage', 'submit', 'suspend', 'timeupdate',
  'toggle', 'touchcancel', 'touchend', 'touchmove', 'touchstart', 'transitioncancel', 'transitionend',
  'transitionrun', 'transitionstart', 'unload', 'volumechange', 'waiting', 'webkitanimationend',
  'webkitanimationiteration', 'webkitanimationstart', 'webkittransitionend', 'wheel', 'zoom',
]
const EV = alternation(EVENTS)

const SCRIPT_TAG = /<\/?script(?:[\s/>]|$)/
const TAG_OPEN = /<[a-z!?/]/
const ANY_HANDLER = /[\s"'/`;+]on[a-z]{3,30}\s{0,8}=/
/** A known handler right after a quote (`" onmouseover=`): an attribute broken out of. */
const HANDLER_AFTER_QUOTE = new RegExp(`["'\`][\\s/+]{0,8}on(?:${EV})\\s{0,8}=`)
/** A known handler whose value calls something (`onfocus=alert(1)`, `onerror=top[…](…)`). */
const HANDLER_CALL = new RegExp(`(?:^|[\\s"'/\`;+])on(?:${EV})\\s{0,8}=\\s{0,8}["'\`]?\\s{0,4}(?:[a-z_$][\\w$.\\[\\]'"+]{0,60}\\s{0,4}[(\`]|(?:java|vb)script:|[(\\[{\`])`)
/**
 * A script URL where a URL goes: at the start (leading spaces are stripped by
 * the URL parser), after `=`, `(` or `url(` (optionally quoted), or followed by
 * a call. A quote alone is not enough: "JavaScript: The Good Parts".
 */
const SCRIPT_URL = /(?:^\s{0,8}["'`]?|[=(,;>[{]\s{0,8}["'`]?\s{0,8}|url\(\s{0,4}["'`]?)(?:java|vb|live|mocha)script:(?![\s+]{1,8}[a-z][a-z'-]{0,30}(?:[\s+,.:;!?]|$)(?![^(`=]{0,80}[(`=]))|(?:java|vb)script:\s{0,8}[a-z_$][\w$.]{0,40}\s{0,4}[(`]/
const DANGEROUS_TAG = /<(?:iframe|frame|frameset|object|embed|applet|base|isindex|portal)(?:[\s/>]|$)|<meta[\s/][^>]{0,200}(?:http-equiv|charset\s{0,3}=\s{0,3}["']?utf-7)|<link[\s/][^>]{0,200}rel\s{0,3}=\s{0,3}["']?import/
const CSS_CODE = /expression\s{0,4}\(|-moz-binding\s{0,4}:|behavior\s{0,4}:\s{0,4}url\s{0,4}\(|@import\s{0,4}["'(u]/
const JS_BREAKOUT = /['"`]\s{0,8}[-+*/%;|&,)^]{1,3}\s{0,8}(?:alert|prompt|confirm|eval|settimeout|setinterval|fetch|import|atob|function|top|window|self|parent|this|document|location|globalthis|constructor)\s{0,4}[(`.[=]/
const DOM_SINK = /document\s{0,4}(?:\??\.|\[\s{0,4}["'`])\s{0,4}(?:cookie|domain|write(?:ln)?\s{0,4}["'`]?\s{0,4}\]?\s{0,4}\()|(?:window|document|top|self)\s{0,4}\.\s{0,4}location\s{0,4}(?:\.\s{0,4}href\s{0,4})?=[^=]|\.(?:inner|outer)html\s{0,4}=[^=]|string\s{0,4}\.\s{0,4}fromcharcode\s{0,4}\(|\beval\s{0,4}\(\s{0,4}(?:atob|unescape|string|decodeuri|location|name)|\bnew\s{1,4}image\s{0,4}\(\s{0,4}\)\s{0,4}\.\s{0,4}src/
const DIALOG = /\b(?:alert|prompt|confirm)\s{0,2}(?:\(\s{0,4}(?:[\d'"`/]|document|window|this|top|self|origin|location)|`)/
/**
 * A dialog or code-running function called in a way only code does: through
 * `.call`/`.apply`/`.bind`, optional chaining, a parenthesised reference, or a
 * computed member of a global (`window['al'+'ert'](1)`), or a Function built
 * from a string and run at once.
 */
const INDIRECT_CALL = /\b(?:alert|prompt|confirm|eval|settimeout|setinterval)\s{0,4}(?:\.\s{0,4}(?:call|apply|bind)\s{0,4}\(|\?\.\s{0,4}\()|\(\s{0,4}(?:alert|prompt|confirm|eval)\s{0,4}\)\s?(?:\(\s{0,4}(?:[\d'"`/)]|document|window|this|top|self|origin|location|null|atob)|`)|\b(?:window|top|self|parent|frames|globalthis|this|document)\[(?=[^\]]{0,200}['"`+(])[^\]]{1,200}\]\s{0,2}\(|\bfunction\s{0,4}\(\s{0,4}["'`][^"'`]{0,300}["'`]\s{0,4}\)\s{0,4}\(|\[[^\]]{0,40}\]\s{0,4}\.\s{0,4}(?:find|map|filter|some|every|foreach)\s{0,4}\(\s{0,4}(?:alert|prompt|confirm|eval)\s{0,4}\(/
const DATA_URL = /(?:^\s{0,8}["'`]?|[=(,;[{]\s{0,8}["'`]?\s{0,8}|url\(\s{0,4}["'`]?)data:(?:text\/html|image\/svg\+xml|application\/(?:x-)?(?:javascript|ecmascript|xhtml\+xml)|text\/(?:javascript|xml))|;base64,(?:phnjcmlwd|phn2zy|pgltzy|pglmcmftz)/
const ANY_HANDLER_PL2 = /(?:^|[^a-z0-9_-])on[a-z]{3,30}\s{0,8}=/
const ACTIVE_TAG = /<(?:img|svg|video|audio|body|input|textarea|select|details|marquee|math|style|form|button|a|xmp|plaintext|noscript|template|image|source|track|bgsound|layer|ilayer|xml|xss|keygen|table|td|div|animate|set|foreignobject)(?:[\s/>]|$)/
const ANY_TAG = /<\/?[a-z][a-z0-9-]{0,30}(?:[\s/>]|$)/
const ATTRIBUTE_BREAKOUT = /["'`]\s{0,4}\/?>\s{0,4}<[a-z!/]/

/** An event handler after a tag has opened: `<svg/onload=`, `<img src=x onerror=`. */
function handlerInTag (v: Value): string | undefined {
  const s = v.js
  const tag = s.search(TAG_OPEN)
  if (tag === -1) return undefined
  return found(ANY_HANDLER, tag === 0 ? s : s.slice(tag))
}

function handlerOutsideTag (v: Value): string | undefined {
  const s = v.js
  if (s.indexOf('on') === -1) return undefined
  return found(HANDLER_AFTER_QUOTE, s) ?? found(HANDLER_CALL, s)
}

/**
 * `"><` closing an attribute the value was put in, before the value opened
 * any tag of its own: in HTML a value writes itself, every `alt="x"><` is one.
 */
function attributeBreakout (v: Value): string | undefined {
  const s = v.js
  const m = ATTRIBUTE_BREAKOUT.exec(s)
  if (m === null) return undefined
  const firstTag = s.search(TAG_OPEN)
  return firstTag !== -1 && firstTag < m.index ? undefined : m[0]
}

function cssCode (v: Value): string | undefined {
  const s = v.js
  return s.indexOf('style') === -1 ? undefined : found(CSS_CODE, s)
}

const WHERE = ['path', 'query', 'body', 'cookie', 'header'] as const

export const xssRules: readonly ValueRule[] = [
  { kind: 'value', id: 1501, family: 'xss', severity: 'critical', paranoia: 1, where: WHERE, description: 'XSS: script tag', match: pattern('js', SCRIPT_TAG) },
  { kind: 'value', id: 1502, family: 'xss', severity: 'critical', paranoia: 1, where: WHERE, description: 'XSS: event handler attribute inside a tag', match: handlerInTag },
  { kind: 'value', id: 1503, family: 'xss', severity: 'critical', paranoia: 1, where: WHERE, description: 'XSS: event handler after an attribute break-out, or calling code', match: handlerOutsideTag },
  { kind: 'value', id: 1504, family: 'xss', severity: 'critical', paranoia: 1, where: WHERE, description: 'XSS: javascript:/vbscript: URL', match: pattern('compact', SCRIPT_URL) },
  { kind: 'value', id: 1505, family: 'xss', severity: 'critical', paranoia: 1, where: WHERE, description: 'XSS: frame, object, embed, base or refreshing meta tag', match: pattern('js', DANGEROUS_TAG) },
  { kind: 'value', id: 1506, family: 'xss', severity: 'critical', paranoia: 1, where: WHERE, description: 'XSS: script in CSS (expression(), -moz-binding, behavior)', match: cssCode },
  { kind: 'value', id: 1507, family: 'xss', severity: 'critical', paranoia: 1, where: WHERE, description: 'XSS: JavaScript string broken out of into a call', match: pattern('js', JS_BREAKOUT) },
  { kind: 'value', id: 1508, family: 'xss', severity: 'critical', paranoia: 1, where: WHERE, description: 'XSS: DOM sink or cookie access (document.cookie, innerHTML=, fromCharCode)', match: pattern('js', DOM_SINK) },
  { kind: 'value', id: 1509, family: 'xss', severity: 'warning', paranoia: 1, where: WHERE, names: false, description: 'XSS: alert()/prompt()/confirm() probe', match: pattern('js', DIALOG) },
  { kind: 'value', id: 1510, family: 'xss', severity: 'critical', paranoia: 1, where: WHERE, description: 'XSS: data: URL carrying HTML, SVG or script', match: pattern('compact', DATA_URL) },
  { kind: 'value', id: 1511, family: 'xss', severity: 'critical', paranoia: 1, where: WHERE, description: 'XSS: dialog or eval called indirectly (.call, ?.(), (alert)(), window[…](), Function("…")())', match: pattern('js', INDIRECT_CALL) },
  { kind: 'value', id: 1520, family: 'xss', severity: 'critical', paranoia: 2, where: WHERE, description: 'XSS: any on…= event handler attribute', match: pattern('js', ANY_HANDLER_PL2) },
  { kind: 'value', id: 1521, family: 'xss', severity: 'error', paranoia: 2, where: WHERE, description: 'XSS: HTML tag that can carry script', match: pattern('js', ACTIVE_TAG) },
  { kind: 'value', id: 1522, family: 'xss', severity: 'critical', paranoia: 2, where: WHERE, description: 'XSS: javascript: anywhere', match: pattern('compact', /(?:java|vb)script:/) },
  { kind: 'value', id: 1523, family: 'xss', severity: 'error', paranoia: 2, where: WHERE, description: 'XSS: attribute closed and a tag opened ("><…)', match: attributeBreakout },
  { kind: 'value', id: 1530, family: 'xss', severity: 'warning', paranoia: 3, where: WHERE, names: false, description: 'XSS: any HTML tag', match: pattern('js', ANY_TAG) },
]
