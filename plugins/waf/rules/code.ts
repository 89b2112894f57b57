import type { Value } from '../normalize.ts'
import { found, pattern, type Part, type ValueRule } from '../rule.ts'

/**
 * Code injection into an interpreter other than the shell or the database:
 * PHP, server-side JavaScript, template engines (`{{7*7}}`, `${…}`, `<%= %>`),
 * Java expression languages (SpEL, OGNL, Log4j lookups), Python and Ruby
 * sandbox escapes, server-side includes, XML external entities, serialized
 * objects, LDAP filters and uploaded scripts. Each pattern names syntax that has no other
 * use in a request, so ordinary text and JSON pass.
 */

const PHP_TAG = /<\?(?:php|=)|<\?\s{1,4}(?:echo|system|eval|\$_|exec|passthru|include|require)\b/
const PHP_CALL = /\b(?:shell_exec|passthru|proc_open|pcntl_exec|popen|phpinfo|create_function|call_user_func(?:_array)?|gzinflate|gzuncompress|str_rot13|base64_decode|file_put_contents|file_get_contents|highlight_file|show_source|move_uploaded_file|fsockopen|pfsockopen|assert_options|posix_getpwuid|posix_setuid)\s{0,4}\(|\b(?:system|exec|eval|assert|include|include_once|require|require_once|readfile|fopen|unlink|preg_replace|unserialize)\s{0,4}\(\s{0,4}(?:["'`]\s{0,4}(?:[a-z0-9_./-]{1,40}\s{0,4}["'`;)]|\$|[a-z]{2,12}\s-|\/)|\$_|\$[a-z_]|base64_decode|gzinflate|str_rot13|chr\s{0,2}\(|php:|https?:|\.\.)/
const PHP_GLOBALS = /\$_(?:get|post|request|cookie|server|files|env|session)\s{0,4}\[|\$globals\s{0,4}\[/
const PHP_OBJECT = /(?:^|[;{}:|])[oc]:\d{1,5}:"[a-z0-9_\\]{1,200}":\d{1,5}:\{/
const TEMPLATE_MATH = /(?:\{\{|\$\{|#\{|\*\{|@\{|<%=?|\{%|@\(|\[\[|\$\$\{)\s{0,8}["']?-?\d{1,10}["']?\s{0,8}[*+\-/%]\s{0,8}["']?-?\d{1,10}["']?\s{0,8}(?:\}\}|\}|%>|%\}|\)|\]\])/
const TEMPLATE_OBJECT = /\{\{\s{0,8}(?:self|config|request|settings|lipsum|cycler|joiner|namespace|url_for|get_flashed_messages|_self|range|dict)\b\s{0,4}(?:[.[|(]|\}\})|\|\s{0,4}attr\s{0,4}\(|\{%\s{0,8}(?:import|include|extends|exec|debug)\b|<#assign\b|\?\s{0,4}new\s{0,4}\(\s{0,4}\)|freemarker\.template\.utility|\bvelocitycontext\b|#set\s{0,4}\(\s{0,4}\$[a-z_]{1,40}\s{0,4}=\s{0,4}["']?\s{0,4}\$?[a-z_.]{0,40}\.(?:class|getclass|forname)/
const PYTHON_DUNDER = /__(?:class|mro|subclasses|globals|builtins|import|getattribute|bases|func_globals|reduce_ex)__/
const NODE = /require\s{0,4}\(\s{0,4}["'`](?:child_process|fs|net|vm|os|process|http)["'`]\s{0,4}\)|child_process|process\s{0,4}\.\s{0,4}(?:mainmodule|binding|dlopen|kill|exit)\b|global(?:this)?\s{0,4}\.\s{0,4}process\b|\bconstructor\s{0,4}\.\s{0,4}constructor\s{0,4}\(|\.constructor\s{0,4}\(\s{0,4}["'`]|\[\s{0,4}["'`]constructor["'`]\s{0,4}\]|new\s{1,4}function\s{0,4}\(\s{0,4}["'`]|\bimport\s{0,4}\(\s{0,4}["'`](?:child_process|fs|os)["'`]/
const PROTOTYPE = /__proto__|constructor\s{0,4}(?:\.|\[\s{0,4}["']?)\s{0,4}prototype/
const LOG4J = /\$\{[^}]{0,100}?\$\{|\$\{\s{0,8}(?:jndi|env|sys|java|lower|upper|date|main|bundle|ctx|sd|k8s|docker|spring|log4j|base64|marker|map|event|web|::-)\s{0,8}:|jndi\s{0,4}:\s{0,4}(?:ldaps?|rmi|dns|iiop|corba|nds|nis|https?):/
const JAVA_EL = /\bt\s{0,4}\(\s{0,4}java\.|java\.lang\.(?:runtime|processbuilder|system|class|thread|reflect)|\.getruntime\s{0,4}\(\s{0,4}\)|processbuilder\s{0,4}\(|\.forname\s{0,4}\(|\.getclass\s{0,4}\(\s{0,4}\)\s{0,4}\.|%\{\s{0,8}[(#@]|#_memberaccess|@ognl\.|ognlcontext|#context\s{0,4}\[|#(?:attr|application|request|session|parameters)\s{0,4}\[|@java\.lang\.|\(#[a-z_]{1,40}\s{0,4}=|\$\{\s{0,8}(?:new\s|@|#|['"]\s{0,4}\.|[a-z_.]{1,60}\.(?:getclass|forname|getruntime|invoke|newinstance|getmethod|getdeclaredmethod)\b)|#\{\s{0,8}(?:[a-z_.]{1,60}\.)?(?:system|exec|spawn|eval|`|%x|io\.popen|file\.read|runtime)/
const SSI = /<!--\s{0,4}#\s{0,4}(?:exec|include|echo|config|set|printenv|fsize|flastmod|if)\b/
const XXE = /<!entity\s|<!doctype\s[^>[]{0,200}\[|<!doctype\s[^>]{0,200}\bsystem\s{1,8}["']|\bsystem\s{1,8}["'](?:file|https?|php|expect|jar|ftp|gopher|netdoc):/
const SERIALIZED = /(?:^|[^a-zA-Z0-9+/])rO0AB|aced0005|AAEAAAD\/\/\/\/\/|\u00ac\u00ed\u0000\u0005|c__builtin__|cposix\nsystem|cos\nsystem|!!python\/object|!!javax\.script|!ruby\/(?:object|hash)/
/** .NET gadget types named in a JSON `$type` or XAML payload. */
const DOTNET_GADGET = /system\.windows\.data\.objectdataprovider|system\.diagnostics\.process\b|system\.management\.automation|typeconfusedelegate|textformattingrunproperties|system\.security\.principal\.windowsidentity|system\.configuration\.install\.assemblyinstaller/
const PYTHON = /\bos\s{0,4}\.\s{0,4}(?:system|popen|exec[lv]p?e?|spawn[lv]p?e?)\s{0,4}\(|\bsubprocess\s{0,4}\.\s{0,4}(?:call|popen|run|check_output|check_call|getoutput)\s{0,4}\(|\b__import__\s{0,4}\(|\bpickle\s{0,4}\.\s{0,4}loads?\s{0,4}\(|\bimportlib\s{0,4}\.\s{0,4}import_module\s{0,4}\(|\bcommands\s{0,4}\.\s{0,4}getoutput\s{0,4}\(/
const ERB = /<%=?\s{0,4}(?:system|exec|spawn|eval|`|%x|io\.popen|file\.(?:read|open)|kernel\.)/
const SCRIPT_UPLOAD = /\.(?:php\d?|phtml|phar|pht|phps|pgif|shtml?|jsp|jspx|jsw|jsv|jspf|asp|aspx|asa|asax|ascx|ashx|asmx|cer|cgi|pl|py|rb|sh|exe|dll|bat|cmd|com|vbs|ps1|htaccess|war|jar)(?:$|[.;\s%:])/
const WEBSHELL = /<\?(?:php|=)|<%@\s{0,4}page|<%\s{0,4}(?:eval|execute|response\.write|runtime|request)|<jsp:|<script\s{1,8}runat\s{0,4}=\s{0,4}["']?server/
/** LDAP filter injection: a filter closed and a new one opened (`*)(uid=*))(|(uid=*`). */
const LDAP = /[a-z][a-z0-9-]{0,30}(?::dn)?:\d{1,9}(?:\.\d{1,9}){2,}:=|^\s{0,4}\*?\s{0,4}\(\s{0,4}[|&!]\s{0,4}\(\s{0,4}[a-z][a-z0-9-]{0,30}\s{0,4}[~<>]?=|\*\s{0,4}\)\s{0,4}\([(|&!\s]{0,8}[a-z][a-z0-9-]{0,30}\s{0,4}[~<>]?=|\)\s{0,4}\(\s{0,4}[|&!][(|&!\s]{0,8}[a-z][a-z0-9-]{0,30}\s{0,4}[~<>]?=/
const JS_STRING_CODE = /\b(?:function|settimeout|setinterval)\s{0,4}\(\s{0,4}["'`]/
const TEMPLATE_EXPRESSION = /\{\{\s{0,8}[a-z_$][\w$]{0,40}\s{0,4}[.([]|\$\{\s{0,8}[a-z_$][\w$]{0,40}\s{0,4}[.([]/

/** A line break followed by an SMTP or IMAP command: a value written into a mail conversation. */
const MAIL_COMMAND = /[\r\n]\s{0,4}(?:rcpt\s{1,4}to\s{0,4}:|mail\s{1,4}from\s{0,4}:|(?:helo|ehlo)\s{1,4}[a-z0-9.-]{1,60}\s{0,4}(?:[\r\n]|$)|quit\s{0,4}(?:[\r\n]|$)|data\s{0,4}[\r\n]|[a-z]{1,2}\d{3,6}\s{1,4}(?:capability|fetch|login|select|examine|store|copy|logout|list|status|append|uid)\b)/
const SMTP_ENVELOPE = /[\r\n]\s{0,4}(?:rcpt\s{1,4}to|mail\s{1,4}from)\s{0,4}:\s{0,4}<?[^\s@<>]{1,64}@/
/** A mail header slipped in after a line break (`%0aBcc: x@y`): in a single-line field only. */
const MAIL_HEADER = /[\r\n]\s{0,4}(?:bcc|cc|to|from|reply-to|subject|content-type)\s{0,4}:\s{0,4}[^\r\n]{1,200}/

function mailInjection (v: Value, part: Part): string | undefined {
  const t = v.text
  if (t.indexOf('\n') === -1 && t.indexOf('\r') === -1) return undefined
  // A textarea's message may well have a "To:" line, or one that reads "quit"
  // or "v2 list"; a query, cookie or header value may not. In a body only
  // the SMTP envelope commands count.
  if (part.location === 'body') return found(SMTP_ENVELOPE, t)
  return found(MAIL_COMMAND, t) ?? found(MAIL_HEADER, t)
}

function uploadName (v: Value, part: Part): string | undefined {
  return part.file === 'name' ? found(SCRIPT_UPLOAD, v.text) : undefined
}

function uploadContent (v: Value, part: Part): string | undefined {
  return part.file === 'content' ? found(WEBSHELL, v.text) : undefined
}

const WHERE = ['path', 'query', 'body', 'cookie', 'header'] as const

export const codeRules: readonly ValueRule[] = [
  { kind: 'value', id: 1401, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'PHP injection: opening tag', match: pattern('text', PHP_TAG) },
  { kind: 'value', id: 1402, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'PHP injection: dangerous function call', match: pattern('text', PHP_CALL) },
  { kind: 'value', id: 1403, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'PHP injection: superglobal access', match: pattern('text', PHP_GLOBALS) },
  { kind: 'value', id: 1404, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'PHP object injection: serialized object', match: pattern('text', PHP_OBJECT) },
  { kind: 'value', id: 1405, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'Template injection: arithmetic probe ({{7*7}}, ${7*7}, <%= 7*7 %>)', match: pattern('text', TEMPLATE_MATH) },
  { kind: 'value', id: 1406, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'Template injection: engine object or statement ({{config}}, {{self.…}}, |attr(), {% import %})', match: pattern('text', TEMPLATE_OBJECT) },
  { kind: 'value', id: 1407, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'Python sandbox escape (__class__, __globals__, __builtins__ …)', match: pattern('text', PYTHON_DUNDER) },
  { kind: 'value', id: 1408, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'JavaScript injection: Node.js process access or Function constructor', match: pattern('js', NODE) },
  { kind: 'value', id: 1409, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'Prototype pollution (__proto__, constructor.prototype)', match: pattern('js', PROTOTYPE) },
  { kind: 'value', id: 1410, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, headers: 'all', description: 'Log4j lookup / JNDI injection (${jndi:…}, nested ${${…}})', match: pattern('text', LOG4J) },
  { kind: 'value', id: 1411, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, headers: 'all', description: 'Expression language injection (SpEL T(), OGNL %{…}, java.lang.Runtime)', match: pattern('text', JAVA_EL) },
  { kind: 'value', id: 1412, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'Server-side include directive', match: pattern('text', SSI) },
  { kind: 'value', id: 1413, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'XML external entity declaration', match: pattern('text', XXE) },
  { kind: 'value', id: 1414, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'Deserialization: Java, .NET, Python pickle or YAML object payload', match: (v) => found(SERIALIZED, v.decoded) ?? found(DOTNET_GADGET, v.text) },
  { kind: 'value', id: 1415, family: 'code', severity: 'critical', paranoia: 1, where: ['body'], files: true, description: 'Upload of a file with a script or executable extension', match: uploadName },
  { kind: 'value', id: 1416, family: 'code', severity: 'critical', paranoia: 1, where: ['body'], files: true, description: 'Upload of a web shell (PHP, JSP, ASP code in the file)', match: uploadContent },
  { kind: 'value', id: 1417, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'Python injection: os.system, subprocess, __import__, pickle', match: pattern('text', PYTHON) },
  { kind: 'value', id: 1418, family: 'code', severity: 'critical', paranoia: 1, where: WHERE, description: 'Ruby/ERB injection', match: pattern('text', ERB) },
  { kind: 'value', id: 1419, family: 'code', severity: 'critical', paranoia: 1, where: ['query', 'body', 'cookie'], description: 'LDAP filter injection', match: pattern('text', LDAP) },
  { kind: 'value', id: 1421, family: 'code', severity: 'critical', paranoia: 1, where: ['path', 'query', 'body', 'cookie', 'header'], names: false, description: 'Mail command or header injection (CRLF then RCPT TO:, QUIT, an IMAP command, Bcc:)', match: mailInjection },
  { kind: 'value', id: 1420, family: 'code', severity: 'error', paranoia: 2, where: WHERE, description: 'JavaScript injection: code passed as a string to Function/setTimeout', match: pattern('js', JS_STRING_CODE) },
  { kind: 'value', id: 1430, family: 'code', severity: 'warning', paranoia: 3, where: WHERE, description: 'Template injection: expression with member access or call', match: pattern('text', TEMPLATE_EXPRESSION) },
]
