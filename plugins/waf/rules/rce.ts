import type { Value } from '../normalize.ts'
import { alternation, found, pattern, type Part, type ValueRule } from '../rule.ts'

/**
 * OS command injection. Rules read `shell`: the lower-cased value with the
 * quoting tricks a shell ignores undone (`c'a't`, `c\at`, `w^h^o^a^m^i`,
 * `${IFS}`, `{cat,/etc/passwd}`) and line breaks read as `;`. A command must
 * follow a separator (`;`, `|`, `&`, a newline, `` ` ``, `$(`), and a command
 * that is also an English word (cat, ping, sleep, python …) must be followed
 * by something only a command line has — an option, a path, a variable, a
 * redirection, an address — so "Java & Python" or "cats & dogs; id card" pass.
 */

/** Commands no sentence contains: a separator and the name are enough. */
const STRONG = [
  'whoami', 'uname', 'ifconfig', 'ipconfig', 'wget', 'netcat', 'ncat', 'nc', 'certutil', 'bitsadmin', 'powershell',
  'pwsh', 'wmic', 'rundll32', 'regsvr32', 'mshta', 'cscript', 'wscript', 'mkfifo', 'busybox', 'socat', 'printenv',
  'useradd', 'usermod', 'chmod', 'chown', 'xterm', 'systeminfo', 'tasklist', 'taskkill', 'netstat', 'nslookup',
  'tracert', 'traceroute', 'crontab', 'nohup', 'setsid', 'xargs', 'getent', 'lsof', 'killall', 'pkill', 'nmap',
  'gcc', 'gawk', 'tftp', 'telnet', 'sudo', 'passwd', 'schtasks', 'nbtstat', 'qwinsta', 'icacls', 'vssadmin',
  'wevtutil', 'bcdedit', 'fsutil', 'findstr', 'iptables', 'systemctl', 'python3', 'python2', 'perl5', 'php7',
  'php8', 'ruby2', 'nodejs', 'cmd.exe', 'sh.exe', 'ftp.exe',
]
/** Commands that are also words: they need an argument that looks like a command line. */
const WORDY = [
  'cat', 'ls', 'id', 'echo', 'ping', 'sleep', 'rm', 'cp', 'mv', 'touch', 'head', 'tail', 'more', 'less', 'dir',
  'type', 'net', 'env', 'ps', 'pwd', 'who', 'kill', 'timeout', 'tar', 'unzip', 'dig', 'whois', 'exec', 'eval',
  'source', 'curl', 'perl', 'python', 'ruby', 'php', 'node', 'lua', 'awk', 'sed', 'grep', 'find', 'bash', 'sh',
  'zsh', 'ksh', 'csh', 'tcsh', 'dash', 'ssh', 'scp', 'rsync', 'base64', 'openssl', 'xxd', 'strings', 'ver',
  'hostname', 'mkdir', 'rmdir', 'cmd', 'cd', 'wc', 'uptime', 'jrunscript', 'printf',
]
/**
 * Word commands that are a whole command line on their own (`;id`, `|ls`).
 * Not after a line break: a textarea may well list "id" on a line of its own.
 */
const ALONE = ['id', 'ls', 'pwd', 'ps', 'who', 'dir', 'ver', 'env', 'hostname', 'bash', 'sh', 'zsh', 'ksh', 'tcsh', 'csh', 'uptime']

const S = alternation(STRONG)
const W = alternation(WORDY)
const A = alternation(ALONE)
const ALL = alternation([...new Set([...STRONG, ...WORDY])])

/** A separator that starts a new command, then an optional opener or quote and a path prefix. */
const OPENER = '\\s{0,8}[({\'"]?\\s{0,4}(?:(?:[a-z]:)?(?:/[a-z0-9_.-]{1,30}){0,5}/)?'
const SEP = `(?:[;|&\`\\n]|\\$\\()${OPENER}`
const SEP_SAME_LINE = `(?:[;|&\`]|\\$\\()${OPENER}`
const END = '(?:[\\s;|&<>\'")`]|$)'
/** What follows a command word only on a command line. */
const ARG = '\\s{1,8}(?:-{1,2}[a-z0-9]|/|~|\\.{1,2}/|\\$|[\'"`]|[<>|&;]|[a-z]:[/\\\\]|%[a-z]|\\d{1,3}(?:\\.\\d{1,3}){3}|[a-z0-9_-]{1,40}\\.[a-z]{1,6}(?:$|[\\s;|&/:])|\\d{1,10}(?:\\.\\d{1,3})?\\s{0,4}(?:$|[;&|#`)\'"]|\\s-))|\\s{0,8}[<>]'

const AFTER_SEP_STRONG = new RegExp(`${SEP}(?:${S})(?:\\.exe)?${END}`)
const AFTER_SEP_WORDY = new RegExp(`${SEP}(?:${W})(?:\\.exe)?(?:${ARG})`)
const AFTER_SEP_ALONE = new RegExp(`${SEP_SAME_LINE}(?:${A})\\s{0,8}(?:[;|&\`)#]|$)`)
const AFTER_LINE_ALONE = new RegExp(`${SEP}(?:${A})\\s{0,8}(?:[;|&\`)#\\n]|$)`)
const AFTER_SEP_BINPATH = /(?:[;|&`\n]|\$\()\s{0,8}['"]?(?:\/usr)?(?:\/local)?\/s?bin\/[a-z0-9_.-]{1,30}/
const SUBSTITUTION = new RegExp(`\\$\\(\\s{0,4}(?:(?:/[a-z0-9_.-]{1,30}){0,5}/)?(?:${ALL})${END}`)
const BACKTICK = new RegExp(`(?:^|[;|&=<>('"])\\s{0,4}\`\\s{0,4}(?:(?:/[a-z0-9_.-]{1,30}){0,5}/)?(?:${ALL})(?:[\\s\`;|&]|$)`)
const BACKTICK_ANY = new RegExp(`\`\\s{0,4}(?:(?:/[a-z0-9_.-]{1,30}){0,5}/)?(?:${ALL})(?:[\\s\`;|&][^\`]{0,200})?\``)
const SHELL_CODE = /\/bin\/(?:ba|da|z|k|c|tc|fi)?sh(?:[\s;|&<>'")`]|$)|\/usr\/bin\/(?:env|perl|python\d?|ruby|php|nc|ncat|wget|curl|id|whoami|bash|sh)(?:[\s;|&<>'")`]|$)|\/dev\/(?:tcp|udp)\/|\bnc(?:at)?\s{1,8}(?:-[a-z]{1,4}\s{1,8}[^\s]{0,40}\s{1,8}){0,4}-[a-z]{0,3}e\s|\bbash\s{1,4}-i\s|\bmkfifo\s{1,8}\/|(?:curl|wget)\s[^|;]{1,200}\|\s{0,4}(?:ba|z|da)?sh\b|\bsh\s{1,4}-c\s{1,4}['"]|\bpython\d?\s{1,4}-c\s{1,4}['"]?\s{0,4}import\s|\bperl\s{1,4}-e\s{1,4}['"]|\bphp\s{1,4}-r\s{1,4}['"]|\bruby\s{1,4}-(?:e|rsocket)\s/
const IFS = /\$\{ifs\}|\$ifs\b|\$ifs\$\d/
const BRACE_EXPANSION = new RegExp(`\\{\\s{0,2}(?:${ALL}),[^}\\s]{1,100}\\}`)
const WINDOWS_ANYWHERE = /(?:^|[\s;|&'"(`])(?:cmd(?:\.exe)?\s{1,8}\/[ckr]\s|powershell(?:\.exe)?\s{1,8}(?:-[a-z]{1,20}|iex\b|invoke-)|pwsh(?:\.exe)?\s{1,8}-[a-z]|%comspec%|%systemroot%|certutil(?:\.exe)?\s{1,8}[-/](?:urlcache|decode|encode|f\b)|bitsadmin(?:\.exe)?\s{1,8}\/transfer|(?:iex|invoke-expression|invoke-webrequest|downloadstring|downloadfile|start-process)\s{0,4}[(\s]|rundll32(?:\.exe)?\s{1,8}[a-z0-9_.:\\/-]{1,80},|regsvr32(?:\.exe)?\s{1,8}\/|mshta(?:\.exe)?\s{1,8}(?:https?|vbscript|javascript):)/
const WINDOWS_AFTER_SEP = /[;|&`\n]\s{0,8}(?:net1?\s{1,8}(?:user|localgroup|group|share|view|use|accounts)\b|reg(?:\.exe)?\s{1,8}(?:query|add|save|delete)\s{1,8}hk|type\s{1,8}[a-z]:\\|dir\s{1,8}[a-z]:\\|wmic\s{1,8}[a-z]|set\s{1,8}\/a\s|systeminfo\b|whoami(?:\s{1,8}\/[a-z]|\b))/
const SHELLSHOCK_START = /^\s{0,4}\(\s{0,4}\)\s{0,4}\{/
const SHELLSHOCK = /\(\s{0,4}\)\s{0,4}\{\s{0,8}[:;_a-z]/
const ANY_AFTER_SEP = new RegExp(`${SEP}(?:${ALL})(?:\\.exe)?(?:\\s|$)|^\\s{0,8}(?:${S})(?:\\.exe)?(?:\\s|$)`)

/** System paths a command line reaches for, to test shell globs against. */
const GLOB_TARGETS = [
  '/etc/passwd', '/etc/shadow', '/etc/group', '/etc/hosts', '/etc/issue', '/etc/sudoers', '/proc/self/environ',
  '/bin/sh', '/bin/bash', '/bin/dash', '/bin/cat', '/bin/ls', '/bin/nc', '/bin/busybox', '/usr/bin/id', '/usr/bin/whoami',
  '/usr/bin/wget', '/usr/bin/curl', '/usr/bin/nc', '/usr/bin/perl', '/usr/bin/python', '/usr/bin/python3', '/usr/bin/env',
]
/** A path of two or more segments, some with `?` or `*` in them, where an argument starts. */
const GLOB_PATH = /(?:^|[\s;|&`'"(<>=])((?:\/[a-z0-9_.?*-]{1,30}){2,6})/g

/** Shell glob matching, segment by segment: `?` and `*` never match a `/`. */
function globMatches (glob: string, path: string): boolean {
  const gs = glob.split('/')
  const ps = path.split('/')
  if (gs.length !== ps.length) return false
  for (let i = 0; i < gs.length; i++) if (!segmentMatches(gs[i] as string, ps[i] as string)) return false
  return true
}

/** One segment (`?` one character, `*` any run), greedy with backtracking to the last star: O(glob × segment). */
function segmentMatches (glob: string, path: string): boolean {
  let g = 0
  let p = 0
  let star = -1
  let mark = 0
  while (p < path.length) {
    const c = glob.charCodeAt(g)
    if (g < glob.length && (c === 63 /* ? */ || c === path.charCodeAt(p))) { g++; p++ } else if (c === 42 /* * */) { star = g++; mark = p } else if (star !== -1) { g = star + 1; p = ++mark } else return false
  }
  while (glob.charCodeAt(g) === 42) g++
  return g === glob.length
}

/** `/???/??t /e?c/pa*wd`: a glob that names a system path without spelling it. */
function globbedSystemPath (v: Value): string | undefined {
  const s = v.shell
  if (s.indexOf('/') === -1 || (s.indexOf('?') === -1 && s.indexOf('*') === -1)) return undefined
  for (const m of s.matchAll(GLOB_PATH)) {
    const path = m[1] as string
    if (path.indexOf('?') === -1 && path.indexOf('*') === -1) continue
    // The file itself must be spelled at least in part: `/bin/*` or `/usr/*`
    // is a whole directory (an rsync exclude list), not a command.
    if (!/[a-z0-9]/.test(path.slice(path.lastIndexOf('/') + 1))) continue
    for (const target of GLOB_TARGETS) if (globMatches(path, target)) return path
  }
  return undefined
}

function shellshock (v: Value, part: Part): string | undefined {
  return found(part.location === 'header' ? SHELLSHOCK : SHELLSHOCK_START, v.text)
}

function afterSeparator (v: Value, part: Part): string | undefined {
  const s = v.shell
  // A line of its own is a command after `%0a` in a query, but just a line in a textarea.
  const alone = part.location === 'body' ? AFTER_SEP_ALONE : AFTER_LINE_ALONE
  return found(AFTER_SEP_STRONG, s) ?? found(alone, s) ?? found(AFTER_SEP_WORDY, s) ?? found(AFTER_SEP_BINPATH, s)
}

const WHERE = ['path', 'query', 'body', 'cookie', 'header'] as const

export const rceRules: readonly ValueRule[] = [
  { kind: 'value', id: 1301, family: 'rce', severity: 'critical', paranoia: 1, where: WHERE, description: 'Command injection: command substitution $(…) or `…`', match: (v) => found(SUBSTITUTION, v.shell) ?? found(BACKTICK, v.shell) },
  { kind: 'value', id: 1302, family: 'rce', severity: 'critical', paranoia: 1, where: WHERE, names: false, description: 'Command injection: command after a separator (; | & newline)', match: afterSeparator },
  { kind: 'value', id: 1303, family: 'rce', severity: 'critical', paranoia: 1, where: WHERE, description: 'Command injection: shell, interpreter or reverse-shell invocation', match: pattern('shell', SHELL_CODE) },
  { kind: 'value', id: 1304, family: 'rce', severity: 'critical', paranoia: 1, where: WHERE, description: 'Command injection: ${IFS} or {cmd,arg} brace expansion', match: (v) => found(IFS, v.text) ?? found(BRACE_EXPANSION, v.text) },
  { kind: 'value', id: 1305, family: 'rce', severity: 'critical', paranoia: 1, where: WHERE, description: 'Command injection: Windows command shell, PowerShell or LOLBin', match: (v) => found(WINDOWS_ANYWHERE, v.text) ?? found(WINDOWS_AFTER_SEP, v.text) },
  { kind: 'value', id: 1307, family: 'rce', severity: 'critical', paranoia: 1, where: WHERE, names: false, description: 'Command injection: a shell glob standing for a system path (/???/??t, /etc/pa*wd)', match: globbedSystemPath },
  { kind: 'value', id: 1306, family: 'rce', severity: 'critical', paranoia: 1, where: WHERE, headers: 'all', description: 'Command injection: Shellshock function definition', match: shellshock },
  { kind: 'value', id: 1320, family: 'rce', severity: 'error', paranoia: 2, where: WHERE, names: false, description: 'Command injection: any known command after a separator, or a command-only word at the start', match: pattern('shell', ANY_AFTER_SEP) },
  { kind: 'value', id: 1321, family: 'rce', severity: 'critical', paranoia: 2, where: WHERE, description: 'Command injection: backtick substitution anywhere', match: pattern('shell', BACKTICK_ANY) },
]
