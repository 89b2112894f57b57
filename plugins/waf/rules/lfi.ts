import type { Value } from '../normalize.ts'
import { found, type Part, type ValueRule } from '../rule.ts'

/**
 * Path traversal, local and remote file inclusion (and its sibling, requests
 * forged to cloud metadata services). Rules read `fsPath`:
 * decoded repeatedly (so `%252e%252e%252f` and overlong `%c0%af` are `../`),
 * NFKC (fullwidth `．．／`), lower-case, `\` as `/`. A URL path never carries
 * dot segments from a browser, so one is enough there; in a parameter a single
 * `../` can be an honest relative path, so it takes two, or one that reaches
 * a system file.
 */

/** `..` as a path segment: `../`, `..\`, `..;/` (Tomcat), `.../`, `....//`. */
// Runs of dots are bounded: an unbounded `\.{2,}` retried at every dot of a
// long run of dots is quadratic. Sixteen covers every real `....//` trick.
const DOT_SEGMENT = /(?:^|[/;])\.{2,16}(?:[/;]|$)/
const TRAVERSAL_2 = /\.{2,16}[/;]{1,4}\.{2,16}(?:[/;]|$)/
const TRAVERSAL_1 = /(?:^|[/;=])\.{2,16}[/;]/

/** Files read only to steal secrets or map a system; the directory part makes them unambiguous. */
const SYSTEM_FILE = /(?:^|[/:=])(?:etc\/(?:passwd|shadow|group|gshadow|hosts|issue|motd|crontab|sudoers|fstab|hostname|resolv\.conf|master\.passwd|security\/|ssh\/|mysql\/|apache2?\/|nginx\/|httpd\/|php\/|ssl\/)|proc\/(?:self|\d{1,7}|version|cmdline|mounts|net\/)|(?:var|usr\/local)\/(?:log|www)\/|root\/\.|home\/[a-z0-9_.-]{1,32}\/\.|windows\/(?:system32|win\.ini|system\.ini|repair|panther|debug)|winnt\/|boot\.ini|inetpub\/|system32\/|web-inf\/(?:web\.xml|classes\/|lib\/)|meta-inf\/(?:manifest\.mf|context\.xml))/
/** Secrets and configuration by name: only in a path-like position (not "a .env file"). */
const SECRET_FILE = /(?:^|[/=:]|\.\.)(?:\.env(?:\.[a-z]{1,12})?|\.git\/|\.svn\/|\.hg\/|\.ssh\/|\.aws\/|\.docker\/|\.kube\/|\.htpasswd|\.htaccess|\.bash_history|\.zsh_history|\.mysql_history|\.npmrc|\.pgpass|\.netrc|id_(?:rsa|dsa|ecdsa|ed25519)|authorized_keys|known_hosts|web\.config|wp-config\.php|localsettings\.php|php\.ini|my\.cnf|httpd\.conf|nginx\.conf|apache2\.conf|tomcat-users\.xml|applicationhost\.config)(?:$|[?#;/\s])/
/** Files a URL path must never name on a site behind a proxy. */
const RESTRICTED_PATH = /\/(?:\.env(?:\.[a-z0-9_-]{1,20})?|\.git|\.svn|\.hg|\.bzr|\.ds_store|\.htaccess|\.htpasswd|\.ssh|\.aws|\.docker|\.kube|\.bash_history|\.npmrc|\.idea|\.vscode|web\.config|wp-config\.php(?:[.~_-][a-z0-9]{0,10})?|[a-z0-9_-]{1,40}\.(?:sql|bak|old|orig|swp|save)|id_(?:rsa|dsa|ecdsa|ed25519)|etc\/passwd|etc\/shadow|proc\/self|web-inf|meta-inf)(?:$|[/?;#~])/
/** PHP and other stream wrappers: read source, run code, or reach other hosts. */
const WRAPPER = /(?:^|[^a-z0-9])(?:php|phar|zip|expect|glob|file|data|compress\.zlib|compress\.bzip2|ogg|rar|ssh2(?:\.[a-z]{1,8})?|gopher|dict|jar|netdoc|tftp):\/\/?/
const WRAPPER_PL1 = /(?:^|[^a-z0-9])(?:php|phar|zip|expect|glob|file|compress\.zlib|compress\.bzip2|ssh2(?:\.[a-z]{1,8})?|gopher|dict|jar|netdoc):\/\/|(?:^|[^a-z0-9])data:\/\/|(?:^|[^a-z0-9])file:\/[a-z]/
/** Remote inclusion: a URL to a file, ending in `?` so the extension the application appends becomes its query. */
const RFI_TRAILING = /^(?:https?|ftps?):\/\/[^\s/?#]{1,255}\/[^\s?#]{0,1000}\.[a-z0-9]{1,8}\?+$/
const RFI_IP = /^(?:https?|ftps?):\/\/(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?:\/|$)/
/** Cloud metadata services: the classic server-side request forgery target. */
const METADATA = /(?:^|[^0-9.])169\.254\.169\.254(?:$|[^0-9])|(?:^|[^0-9.])100\.100\.100\.200(?:$|[^0-9])|metadata\.google\.internal|\[?fd00:ec2::254\]?|\/latest\/(?:meta-data|user-data|api\/token)|\/computemetadata\/v1|\/metadata\/(?:instance|identity)\?api-version/
const UNC = /^\\\\[a-z0-9._-]{1,64}\\[a-z0-9$._-]{1,64}/

function traversalInPath (v: Value): string | undefined {
  return found(DOT_SEGMENT, v.fsPath)
}

function traversalInArg (v: Value): string | undefined {
  const s = v.fsPath
  if (s.indexOf('..') === -1) return undefined
  return found(TRAVERSAL_2, s)
}

function traversalSingle (v: Value): string | undefined {
  const s = v.fsPath
  if (s.indexOf('..') === -1) return undefined
  return found(TRAVERSAL_1, s)
}

function systemFile (v: Value, part: Part): string | undefined {
  const s = v.fsPath
  // A URL path has its own list (1204): names like `credentials` are routes there.
  return found(SYSTEM_FILE, s) ?? (part.location === 'path' ? undefined : found(SECRET_FILE, s))
}

function rfiTrailing (v: Value, part: Part): string | undefined {
  return part.isName ? undefined : found(RFI_TRAILING, v.text)
}

const ARGS = ['query', 'body', 'cookie', 'header'] as const

export const lfiRules: readonly ValueRule[] = [
  { kind: 'value', id: 1201, family: 'lfi', severity: 'critical', paranoia: 1, where: ['path'], description: 'Path traversal: dot segment in the URL path', match: traversalInPath },
  { kind: 'value', id: 1202, family: 'lfi', severity: 'critical', paranoia: 1, where: ARGS, description: 'Path traversal: ../../ in a parameter', match: traversalInArg },
  { kind: 'value', id: 1203, family: 'lfi', severity: 'critical', paranoia: 1, where: ['path', ...ARGS], description: 'Local file inclusion: system or secret file', match: systemFile },
  { kind: 'value', id: 1204, family: 'lfi', severity: 'critical', paranoia: 1, where: ['path'], description: 'Restricted file in the URL path (.env, .git, backups, keys)', match: (v) => found(RESTRICTED_PATH, v.fsPath) },
  { kind: 'value', id: 1205, family: 'lfi', severity: 'critical', paranoia: 1, where: ['path', ...ARGS], description: 'File inclusion: stream wrapper (php://, file://, phar://, expect://, data://)', match: (v) => found(WRAPPER_PL1, v.text) },
  { kind: 'value', id: 1206, family: 'lfi', severity: 'critical', paranoia: 1, where: ['query', 'body', 'cookie'], description: 'Remote file inclusion: URL ending in ?', match: rfiTrailing },
  { kind: 'value', id: 1208, family: 'lfi', severity: 'critical', paranoia: 1, where: ['query', 'body', 'cookie', 'header'], description: 'Server-side request forgery: cloud metadata service address', match: (v) => found(METADATA, v.text) },
  { kind: 'value', id: 1207, family: 'lfi', severity: 'warning', paranoia: 1, where: ARGS, names: false, description: 'Path traversal: one ../ in a parameter', match: traversalSingle },
  { kind: 'value', id: 1220, family: 'lfi', severity: 'critical', paranoia: 2, where: ['query', 'body', 'cookie'], names: false, description: 'Remote file inclusion: URL to a bare IP address', match: (v) => found(RFI_IP, v.text) },
  { kind: 'value', id: 1221, family: 'lfi', severity: 'critical', paranoia: 2, where: ['path', ...ARGS], description: 'File inclusion: any stream wrapper', match: (v) => found(WRAPPER, v.text) },
  { kind: 'value', id: 1222, family: 'lfi', severity: 'error', paranoia: 2, where: ['query', 'body', 'cookie'], names: false, description: 'File inclusion: Windows UNC path', match: (v) => found(UNC, v.text) },
  { kind: 'value', id: 1223, family: 'lfi', severity: 'critical', paranoia: 2, where: ARGS, names: false, description: 'Path traversal: one ../ in a parameter (strict)', match: traversalSingle },
]
