'use strict';
// Real deliveries from eventd, received on loopback and verified with stripe-node 23.2.0 (reference §4, §4.5).
// Starts its own eventd (EVENTD_BIN, else <repo>/target/debug/eventd) with EVENTD_ALLOW_PRIVATE_TARGETS=127.0.0.0/8;
// each test creates its own account and its own receiver (node http server on 127.0.0.1, port 0) that records the
// raw body bytes and headers of every POST and answers 200. The test then verifies the recorded bytes with
// `stripe.parseEventNotification(rawBody, sig, secret)` (default 300 s tolerance) and fetches through the SDK.
// The database is SQLite in the temp data dir, or a schema of its own in EVENTD_TEST_DATABASE_URL (PostgreSQL): see backend.js.

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {spawn, execFileSync} = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const Stripe = require('stripe');
const backend = require('./backend');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const BIN = process.env.EVENTD_BIN || path.join(REPO_ROOT, 'target', 'debug', 'eventd');
const PING = 'v2.core.event_destination.ping';
const METER_ERROR = 'v1.billing.meter.error_report_triggered';
const SIGNATURE = /^t=\d+(,v[01]=[0-9a-f]+)+$/;
const WAIT_MS = 15000;

let server; // {proc, port, dataDir, tmp, logPath}

function alnum(n) {
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return Array.from(crypto.randomBytes(n), (b) => chars[b % chars.length]).join('');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const {port} = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function logTail() {
  try {
    return fs.readFileSync(server.logPath, 'utf8').split('\n').slice(-60).join('\n');
  } catch {
    return '(no log)';
  }
}

async function waitHealthy(proc, port) {
  const deadline = Date.now() + 15000;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`eventd exited with ${proc.exitCode}\n${logTail()}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`, {signal: AbortSignal.timeout(1000)});
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = String(e.cause || e);
    }
    await sleep(100);
  }
  throw new Error(`eventd /healthz not ready within 15s (${last})\n${logTail()}`);
}

before(async () => {
  if (!fs.existsSync(BIN)) throw new Error(`eventd binary not found at ${BIN} (cargo build --locked, or set EVENTD_BIN)`);
  console.log(backend.describe());
  backend.setup();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'eventd-node-delivery-'));
  const dataDir = path.join(tmp, 'data');
  fs.mkdirSync(dataDir);
  const logPath = path.join(tmp, 'eventd.log');
  const log = fs.openSync(logPath, 'a');
  const port = await freePort();
  const env = {
    ...backend.env(dataDir),
    EVENTD_BOOTSTRAP_KEYS: `sk_test_${alnum(24)},sk_live_${alnum(24)}`,
    // The receivers listen on 127.0.0.1; eventd refuses loopback targets unless allowed.
    EVENTD_ALLOW_PRIVATE_TARGETS: '127.0.0.0/8',
  };
  const proc = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir], {
    env,
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  server = {proc, port, dataDir, tmp, logPath};
  try {
    await waitHealthy(proc, port);
  } catch (e) {
    await stopServer();
    throw e;
  }
});

async function stopServer() {
  if (!server || server.proc.exitCode !== null || server.proc.signalCode !== null) return;
  const exited = new Promise((resolve) => server.proc.once('exit', resolve));
  process.kill(server.proc.pid, 'SIGTERM');
  const timer = setTimeout(() => process.kill(server.proc.pid, 'SIGKILL'), 10000);
  await exited;
  clearTimeout(timer);
}

after(async () => {
  await stopServer();
  if (server) fs.rmSync(server.tmp, {recursive: true, force: true});
  backend.teardown();
});

function createAccount(parent) {
  const args = ['accounts', 'create', '--data-dir', server.dataDir];
  if (parent) args.push('--parent', parent);
  const out = execFileSync(BIN, args, {encoding: 'utf8', env: backend.env(server.dataDir), stdio: ['ignore', 'pipe', 'pipe']});
  const fields = Object.fromEntries(out.trim().split('\n').map((l) => l.trim().split(/\s+/)));
  assert.ok(fields.account && fields.sk_test && fields.sk_live, `unexpected accounts create output: ${out}`);
  return {id: fields.account, skTest: fields.sk_test, skLive: fields.sk_live};
}

function client(key, extra = {}) {
  return new Stripe(key, {host: '127.0.0.1', port: server.port, protocol: 'http', ...extra});
}

async function publish(key, body, headers = {}) {
  const res = await fetch(`http://127.0.0.1:${server.port}/v2/core/events`, {
    method: 'POST',
    headers: {Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...headers},
    body: JSON.stringify(body),
  });
  const json = await res.json();
  assert.equal(res.status, 200, JSON.stringify(json));
  return json;
}

// A loopback webhook receiver: records {path, headers, raw} for every POST and answers 200.
async function startReceiver() {
  const seen = [];
  const waiters = [];
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const delivery = {path: req.url, headers: req.headers, raw: Buffer.concat(chunks)};
      seen.push(delivery);
      for (const w of waiters.slice()) {
        if (w.match(delivery)) {
          waiters.splice(waiters.indexOf(w), 1);
          clearTimeout(w.timer);
          w.resolve(delivery);
        }
      }
      res.writeHead(200, {'Content-Type': 'text/plain'});
      res.end('ok');
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const {port} = srv.address();
  return {
    url: (p = '/hook') => `http://127.0.0.1:${port}${p}`,
    // The first delivery carrying event `id` (on `path`, if given), already received or within WAIT_MS.
    waitForEvent(id, p) {
      const match = (d) => {
        if (p && d.path !== p) return false;
        try {
          return JSON.parse(d.raw.toString('utf8')).id === id;
        } catch {
          return false;
        }
      };
      const hit = seen.find(match);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = {match, resolve};
        w.timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          const got = seen.map((d) => `${d.path} ${d.raw.toString('utf8').slice(0, 200)}`);
          reject(new Error(`no delivery of ${id}${p ? ` on ${p}` : ''} within ${WAIT_MS} ms; received: ${JSON.stringify(got)}`));
        }, WAIT_MS);
        waiters.push(w);
      });
    },
    close: () => new Promise((resolve) => {
      srv.closeAllConnections();
      srv.close(() => resolve());
    }),
  };
}

function checkHeaders(d) {
  assert.match(d.headers['content-type'] || '', /^application\/json/);
  assert.match(d.headers['stripe-signature'] || '', SIGNATURE);
  assert.match(d.headers['stripe-signature'], /(^|,)v1=/);
}

function assertSignatureError(fn) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof Stripe.errors.StripeSignatureVerificationError, `got ${e && e.constructor.name}: ${e && e.message}`);
    assert.equal(e.type, 'StripeSignatureVerificationError');
    return true;
  });
}

test('ping delivery: parseEventNotification, fetchEvent, fetchRelatedObject', async () => {
  const acct = createAccount();
  const stripe = client(acct.skTest);
  const receiver = await startReceiver();
  try {
    const ed = await stripe.v2.core.eventDestinations.create({
      name: 'node ping receiver',
      type: 'webhook_endpoint',
      event_payload: 'thin',
      enabled_events: [PING],
      webhook_endpoint: {url: receiver.url('/thin')},
      include: ['webhook_endpoint.signing_secret'],
    });
    const secret = ed.webhook_endpoint.signing_secret;
    assert.match(secret, /^whsec_/);
    const ping = await stripe.v2.core.eventDestinations.ping(ed.id);

    const d = await receiver.waitForEvent(ping.id, '/thin');
    checkHeaders(d);
    const sig = d.headers['stripe-signature'];
    const body = JSON.parse(d.raw.toString('utf8'));
    assert.ok(body.data === undefined || body.data === null, `thin notification carries data: ${d.raw}`);

    const notif = stripe.parseEventNotification(d.raw, sig, secret); // default tolerance (300 s)
    assert.equal(notif.id, ping.id);
    assert.equal(notif.object, 'v2.core.event');
    assert.equal(notif.type, PING);
    assert.equal(notif.livemode, false);
    assert.ok(!notif.context, `unexpected context ${notif.context}`);
    assert.deepEqual(notif.related_object, {
      id: ed.id,
      type: 'v2.core.event_destination',
      url: `/v2/core/event_destinations/${ed.id}`,
    });

    // the same bytes as a string verify too
    assert.equal(stripe.parseEventNotification(d.raw.toString('utf8'), sig, secret).id, ping.id);

    const event = await notif.fetchEvent();
    assert.equal(event.id, ping.id);
    assert.equal(event.type, PING);
    assert.equal(event.related_object.id, ed.id);

    const dest = await notif.fetchRelatedObject();
    assert.equal(dest.id, ed.id);
    assert.equal(dest.object, 'v2.core.event_destination');
    assert.equal(dest.status, 'enabled');

    // tampered body, wrong secret
    const tampered = Buffer.from(d.raw);
    tampered[tampered.length - 1] = tampered[tampered.length - 1] === 0x7d ? 0x20 : 0x7d;
    assertSignatureError(() => stripe.parseEventNotification(tampered, sig, secret));
    assertSignatureError(() => stripe.parseEventNotification(d.raw.toString('utf8').replace(ping.id, `${ping.id}x`), sig, secret));
    assertSignatureError(() => stripe.parseEventNotification(d.raw, sig, `whsec_${'0'.repeat(32)}`));
  } finally {
    await receiver.close();
  }
});

test('published thin event delivery: parseEventNotification, fetchEvent returns data', async () => {
  const acct = createAccount();
  const stripe = client(acct.skTest);
  const receiver = await startReceiver();
  try {
    const ed = await stripe.v2.core.eventDestinations.create({
      name: 'node meter receiver',
      type: 'webhook_endpoint',
      event_payload: 'thin',
      enabled_events: [METER_ERROR],
      webhook_endpoint: {url: receiver.url('/meter')},
      include: ['webhook_endpoint.signing_secret'],
    });
    const secret = ed.webhook_endpoint.signing_secret;
    const meter = `mtr_test_${alnum(12)}`;
    const published = await publish(acct.skTest, {
      type: METER_ERROR,
      related_object: {id: meter, type: 'billing.meter', url: `/v1/billing/meters/${meter}`},
      data: {developer_message_summary: 'There is 1 invalid event', validation_start: '2026-01-01T00:00:00.000Z'},
    });

    const d = await receiver.waitForEvent(published.id, '/meter');
    checkHeaders(d);
    const sig = d.headers['stripe-signature'];
    const body = JSON.parse(d.raw.toString('utf8'));
    assert.ok(body.data === undefined || body.data === null, `thin notification carries data: ${d.raw}`);

    const notif = stripe.parseEventNotification(d.raw, sig, secret);
    assert.equal(notif.id, published.id);
    assert.equal(notif.type, METER_ERROR);
    assert.deepEqual(notif.related_object, {id: meter, type: 'billing.meter', url: `/v1/billing/meters/${meter}`});

    const event = await notif.fetchEvent();
    assert.equal(event.id, published.id);
    assert.equal(event.type, METER_ERROR);
    assert.equal(event.data.developer_message_summary, 'There is 1 invalid event');
    assert.equal(event.data.validation_start, '2026-01-01T00:00:00.000Z');

    const tampered = Buffer.from(d.raw.toString('utf8').replace(meter, `${meter}0`), 'utf8');
    assertSignatureError(() => stripe.parseEventNotification(tampered, sig, secret));
  } finally {
    await receiver.close();
  }
});

test('connected-account event to the parent\'s @accounts destination: context and fetchEvent', async () => {
  const parent = createAccount();
  const child = createAccount(parent.id);
  const stripe = client(parent.skTest);
  const receiver = await startReceiver();
  try {
    const ed = await stripe.v2.core.eventDestinations.create({
      name: 'node connect receiver',
      type: 'webhook_endpoint',
      event_payload: 'thin',
      enabled_events: [METER_ERROR],
      events_from: ['@accounts'],
      webhook_endpoint: {url: receiver.url('/connect')},
      include: ['webhook_endpoint.signing_secret'],
    });
    const secret = ed.webhook_endpoint.signing_secret;
    const meter = `mtr_test_${alnum(12)}`;
    const published = await publish(
      parent.skTest,
      {
        type: METER_ERROR,
        related_object: {id: meter, type: 'billing.meter', url: `/v1/billing/meters/${meter}`},
        data: {developer_message_summary: 'There is 1 invalid event'},
      },
      {'Stripe-Context': child.id},
    );
    assert.equal(published.context, child.id);

    const d = await receiver.waitForEvent(published.id, '/connect');
    checkHeaders(d);
    const notif = stripe.parseEventNotification(d.raw, d.headers['stripe-signature'], secret);
    assert.equal(String(notif.context), child.id);
    const event = await notif.fetchEvent(); // sends Stripe-Context: <child>
    assert.equal(event.id, published.id);
    assert.equal(event.context, child.id);
    assert.equal(event.data.developer_message_summary, 'There is 1 invalid event');
  } finally {
    await receiver.close();
  }
});
