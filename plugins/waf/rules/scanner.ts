import { alternation, found, type RequestFacts, type RequestRule, type ValueRule } from '../rule.ts'

/**
 * Security scanners and automated clients, by what they announce. A scanner
 * that hides its User-Agent is caught by what it sends instead (the other
 * families); these rules cost nothing and stop the noisy majority early.
 */

/** Attack tools: no browser or legitimate client calls itself this. */
const SCANNERS = [
  'sqlmap', 'nikto', 'nessus', 'openvas', 'acunetix', 'netsparker', 'invicti', 'appscan', 'webinspect', 'w3af',
  'arachni', 'skipfish', 'wpscan', 'joomscan', 'droopescan', 'whatweb', 'dirbuster', 'gobuster', 'dirb', 'wfuzz',
  'ffuf', 'fuzz faster u fool', 'feroxbuster', 'nuclei', 'jaeles', 'zgrab', 'masscan', 'nmap scripting engine', 'nmap', 'zmeu',
  'morfeus', 'havij', 'commix', 'fimap', 'bsqlbf', 'pangolin', 'absinthe', 'grabber', 'paros', 'zaproxy',
  'owasp zap', 'burpcollaborator', 'metasploit', 'hydra', 'brutus', 'webshag', 'uniscan', 'xsser', 'sqlninja',
  'jorgee', 'muieblackcat', 'dotdotpwn', 'webvulnscan', 'wapiti', 'qualys', 'detectify', 'intruder',
  'struts-pwn', 'log4j-scan', 'sysscan', 'blackwidow', 'webreaper', 'httrack', 'teleport pro', 'crimscanner',
]
const SCANNER_UA = new RegExp(`(?:^|[^a-z0-9])(?:${alternation(SCANNERS)})(?:$|[^a-z0-9])`)
/** Headers scanners add to their own requests. */
const SCANNER_HEADERS = new Set(['acunetix-product', 'acunetix-scanning-agreement', 'acunetix-user-agreement', 'acunetix-aspect', 'acunetix-aspect-password', 'acunetix-aspect-queries', 'x-wipp', 'x-scan-memo', 'x-request-memo', 'x-wvs-id', 'x-scanner', 'x-nessus', 'bugbounty'])
/** Files scanners ask for to fingerprint themselves or a host. */
const SCANNER_PATH = /\/(?:acunetix-wvs-test|nessus[_-]is[_-]probing|w00tw00t\.at\.|nikto-test|sqlmap|netsparker|testasp\.vulnweb|\.nuclei)/
/** Scripting libraries: fine for APIs, unusual for a site used by browsers (PL2, not blocking alone). */
const SCRIPTING = /(?:^|[^a-z0-9])(?:python-requests|python-urllib|python-httpx|aiohttp|go-http-client|java\/\d|libwww-perl|lwp-(?:request|trivial)|curl\/|wget\/|apache-httpclient|scrapy|node-fetch|axios\/|php\/\d|ruby|mechanize|winhttp|windowspowershell|httpie|okhttp\/2|http_request2|pycurl|guzzlehttp)/
/** Aggressive crawlers that ignore crawl budgets (PL3). */
const CRAWLERS = /(?:^|[^a-z0-9])(?:ahrefsbot|semrushbot|mj12bot|dotbot|petalbot|blexbot|megaindex|seekportbot|dataforseobot|serpstatbot|zoominfobot|bytespider|barkrowler|linkpadbot|mauibot|magpie-crawler)/

function scannerHeader (r: RequestFacts): string | undefined {
  for (const [name] of r.headers) if (SCANNER_HEADERS.has(name)) return name
  return undefined
}

function missingUserAgent (r: RequestFacts): string | undefined {
  for (const [name, value] of r.headers) if (name === 'user-agent') return value.trim() === '' ? 'empty User-Agent' : undefined
  return 'no User-Agent'
}

export const scannerRules: ReadonlyArray<ValueRule | RequestRule> = [
  { kind: 'value', id: 1101, family: 'scanner', severity: 'critical', paranoia: 1, where: ['header'], headers: ['user-agent'], description: 'Security scanner User-Agent', match: (v) => found(SCANNER_UA, v.text) },
  { kind: 'request', id: 1102, family: 'scanner', severity: 'critical', paranoia: 1, target: 'request', description: 'Security scanner header', check: scannerHeader },
  { kind: 'value', id: 1103, family: 'scanner', severity: 'critical', paranoia: 1, where: ['path'], description: 'Security scanner probe file', match: (v) => found(SCANNER_PATH, v.fsPath) },
  { kind: 'request', id: 1120, family: 'scanner', severity: 'notice', paranoia: 2, target: 'header:user-agent', description: 'Missing or empty User-Agent', check: missingUserAgent },
  { kind: 'value', id: 1121, family: 'scanner', severity: 'warning', paranoia: 2, where: ['header'], headers: ['user-agent'], description: 'Scripting library User-Agent', match: (v) => found(SCRIPTING, v.text) },
  { kind: 'value', id: 1130, family: 'scanner', severity: 'notice', paranoia: 3, where: ['header'], headers: ['user-agent'], description: 'Aggressive crawler User-Agent', match: (v) => found(CRAWLERS, v.text) },
]
