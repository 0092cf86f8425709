// Testkit: the aedes broker the tests run (tools/testkit/aedes.hpp starts it), on Node >= 20.
//
//   node aedes-broker.mjs MODULES_DIR PORT [--deny FILTER]...
//
// MODULES_DIR is where `npm install --prefix MODULES_DIR aedes@1.2.0` put aedes (it is not in the
// repository: tools/install-deps.sh installs it). Listens on 127.0.0.1:PORT only. A publish whose
// topic matches a --deny filter (MQTT wildcards + and #) is refused by authorizePublish, which is
// how an ACL refuses it in aedes. Prints "aedes VERSION ready on 127.0.0.1:PORT" once it listens,
// and one line per client event, so the test's log says what the broker did.
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { pathToFileURL } from 'node:url'
import path from 'node:path'

const [modulesDir, portText, ...rest] = process.argv.slice(2)
if (!modulesDir || !portText) {
  console.error('usage: aedes-broker.mjs MODULES_DIR PORT [--deny FILTER]...')
  process.exit(2)
}
const denied = []
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === '--deny' && i + 1 < rest.length) {
    denied.push(rest[++i])
  } else {
    console.error('aedes-broker: unknown argument ' + rest[i])
    process.exit(2)
  }
}

// aedes is an ES module outside this script's tree: resolve it from MODULES_DIR.
const require = createRequire(path.join(path.resolve(modulesDir), 'package.json'))
const { Aedes } = await import(pathToFileURL(require.resolve('aedes')).href)
const version = JSON.parse(
  readFileSync(path.join(modulesDir, 'node_modules', 'aedes', 'package.json'))).version

function matches (filter, topic) {
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true
    if (i >= t.length) return false
    if (f[i] !== '+' && f[i] !== t[i]) return false
  }
  return f.length === t.length
}

const broker = await Aedes.createBroker()
broker.authorizePublish = (client, packet, callback) => {
  if (packet.topic.startsWith('$SYS/')) {
    return callback(new Error('$SYS/ topic is reserved'))
  }
  if (denied.some((f) => matches(f, packet.topic))) {
    return callback(new Error('denied publish to ' + packet.topic))
  }
  callback(null)
}
const who = (client) => (client ? client.id : '?')
broker.on('client', (c) => console.log('client connected ' + who(c)))
broker.on('clientDisconnect', (c) => console.log('client disconnected ' + who(c)))
broker.on('clientError', (c, e) => console.log('client error ' + who(c) + ': ' + e.message))
broker.on('connectionError', (c, e) => console.log('connection error ' + who(c) + ': ' + e.message))

const server = createServer(broker.handle)
server.on('error', (e) => {
  console.error('aedes-broker: ' + e.message)
  process.exit(1)
})
server.listen(Number(portText), '127.0.0.1', () => {
  console.log('aedes ' + version + ' ready on 127.0.0.1:' + portText)
})
process.on('SIGTERM', () => broker.close(() => server.close(() => process.exit(0))))
