'use strict';
// eventd driven through stripe-node 23.2.0 exactly as a user would (reference §7.5), with node's test runner.
// Starts one eventd (EVENTD_BIN, else <repo>/target/debug/eventd) on a free port and a temp data dir;
// every test creates its own account with `eventd accounts create`, so tests never see each other's data.
// The database is SQLite in that dir, or a schema of its own in EVENTD_TEST_DATABASE_URL (PostgreSQL): see backend.js.

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {spawn, execFileSync} = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const Stripe = require('stripe');
const backend = require('./backend');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const BIN = process.env.EVENTD_BIN || path.join(REPO_ROOT, 'target', 'debug', 'eventd');
const PING = 'v2.core.event_destination.ping';
const METER_ERROR = 'v1.billing.meter.error_report_triggered';
const NO_METER = 'v1.billing.meter.no_meter_found';
const RFC3339_MS_Z = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

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
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'eventd-node-'));
  const dataDir = path.join(tmp, 'data');
  fs.mkdirSync(dataDir);
  const logPath = path.join(tmp, 'eventd.log');
  const log = fs.openSync(logPath, 'a');
  const port = await freePort();
  const env = {
    ...backend.env(dataDir),
    EVENTD_BOOTSTRAP_KEYS: `sk_test_${alnum(24)},sk_live_${alnum(24)}`,
    // Webhook URLs here are loopback only (127.0.0.1:9, where nothing listens): deliveries never leave the machine.
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

function freshClient() {
  const acct = createAccount();
  return {acct, stripe: client(acct.skTest)};
}

function webhook(extra = {}) {
  return {
    name: 'node dest',
    type: 'webhook_endpoint',
    event_payload: 'thin',
    enabled_events: [PING, METER_ERROR],
    webhook_endpoint: {url: 'https://127.0.0.1:9/hook'},
    ...extra,
  };
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

function meterEvent(meterId, type = METER_ERROR) {
  return {
    type,
    related_object: {id: meterId, type: 'billing.meter', url: `/v1/billing/meters/${meterId}`},
    data: {developer_message_summary: 'There is 1 invalid event'},
  };
}

async function rejects(promise, cls, statusCode, code) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected ${cls.name}, call succeeded`);
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${err && err.type}: ${err && err.message}`);
  assert.equal(err.statusCode, statusCode);
  if (code) assert.equal(err.code, code);
  assert.match(err.requestId || '', /^req_/);
  return err;
}

test('create with include signing_secret', async () => {
  const {stripe} = freshClient();
  const ed = await stripe.v2.core.eventDestinations.create(
    webhook({include: ['webhook_endpoint.signing_secret'], metadata: {team: 'payments'}}),
  );
  assert.equal(ed.object, 'v2.core.event_destination');
  assert.match(ed.id, /^ed_test_/);
  assert.equal(ed.livemode, false);
  assert.equal(ed.status, 'enabled');
  assert.equal(ed.status_details, null);
  assert.equal(ed.description, '');
  assert.deepEqual(ed.events_from, ['@self']);
  assert.deepEqual(ed.metadata, {team: 'payments'});
  assert.match(ed.webhook_endpoint.signing_secret, /^whsec_/);
  assert.equal(ed.webhook_endpoint.url, null);
  assert.match(ed.created, RFC3339_MS_Z);
  assert.match(ed.lastResponse.requestId, /^req_/);

  const got = await stripe.v2.core.eventDestinations.retrieve(ed.id);
  assert.equal(got.webhook_endpoint.signing_secret, null);
});

test('for await auto-paging over list({limit: 2}) across more than 2 pages', async () => {
  const {stripe} = freshClient();
  const made = [];
  for (let i = 0; i < 5; i++) {
    made.push((await stripe.v2.core.eventDestinations.create(webhook({name: `p${i}`, webhook_endpoint: {url: `https://127.0.0.1:9/${i}`}}))).id);
  }
  const first = await stripe.v2.core.eventDestinations.list({limit: 2});
  assert.equal(first.data.length, 2);
  assert.match(first.next_page_url, /^\/v2\/core\/event_destinations\?/);
  assert.equal(first.previous_page_url, null);

  const seen = [];
  for await (const d of stripe.v2.core.eventDestinations.list({limit: 2})) seen.push(d.id);
  assert.deepEqual(seen, [...made].reverse());

  const withUrl = [];
  for await (const d of stripe.v2.core.eventDestinations.list({limit: 2, include: ['webhook_endpoint.url']})) {
    assert.ok(d.webhook_endpoint.url, `url missing for ${d.id}`);
    withUrl.push(d.webhook_endpoint.url);
  }
  assert.deepEqual(withUrl, [4, 3, 2, 1, 0].map((i) => `https://127.0.0.1:9/${i}`));
});

test('retrieve with and without include', async () => {
  const {stripe} = freshClient();
  const ed = await stripe.v2.core.eventDestinations.create(webhook());
  const plain = await stripe.v2.core.eventDestinations.retrieve(ed.id);
  assert.equal(plain.id, ed.id);
  assert.equal(plain.webhook_endpoint.url, null);
  const full = await stripe.v2.core.eventDestinations.retrieve(ed.id, {include: ['webhook_endpoint.url']});
  assert.equal(full.webhook_endpoint.url, 'https://127.0.0.1:9/hook');
});

test('update with metadata null deletes the key', async () => {
  const {stripe} = freshClient();
  const ed = await stripe.v2.core.eventDestinations.create(webhook({metadata: {k: 'v', keep: 'me'}}));
  await sleep(20);
  const upd = await stripe.v2.core.eventDestinations.update(ed.id, {
    description: 'better',
    enabled_events: [PING],
    metadata: {k: null},
  });
  assert.deepEqual(upd.metadata, {keep: 'me'});
  assert.equal(upd.description, 'better');
  assert.deepEqual(upd.enabled_events, [PING]);
  assert.ok(Date.parse(upd.updated) > Date.parse(ed.updated), `updated not bumped: ${ed.updated} -> ${upd.updated}`);
});

test('disable and enable', async () => {
  const {stripe} = freshClient();
  const ed = await stripe.v2.core.eventDestinations.create(webhook());
  const dis = await stripe.v2.core.eventDestinations.disable(ed.id);
  assert.equal(dis.status, 'disabled');
  assert.equal(dis.status_details.disabled.reason, 'user');
  const ena = await stripe.v2.core.eventDestinations.enable(ed.id);
  assert.equal(ena.status, 'enabled');
  assert.equal(ena.status_details, null);
});

test('ping', async () => {
  const {stripe} = freshClient();
  const ed = await stripe.v2.core.eventDestinations.create(webhook());
  const ping = await stripe.v2.core.eventDestinations.ping(ed.id);
  assert.equal(ping.object, 'v2.core.event');
  assert.equal(ping.type, PING);
  assert.match(ping.id, /^evt_test_/);
  assert.deepEqual(ping.related_object, {
    id: ed.id,
    type: 'v2.core.event_destination',
    url: `/v2/core/event_destinations/${ed.id}`,
  });
});

test('events list with filters, and retrieve', async () => {
  const {acct, stripe} = freshClient();
  const e1 = await publish(acct.skTest, meterEvent('mtr_a', METER_ERROR));
  await sleep(20);
  const e2 = await publish(acct.skTest, meterEvent('mtr_b', NO_METER));
  await sleep(20);
  const e3 = await publish(acct.skTest, meterEvent('mtr_a', NO_METER));

  const ids = async (params) => {
    const out = [];
    for await (const e of stripe.v2.core.events.list(params)) out.push(e.id);
    return out;
  };
  assert.deepEqual(await ids({}), [e3.id, e2.id, e1.id]);
  assert.deepEqual(await ids({object_id: 'mtr_a'}), [e3.id, e1.id]);
  assert.deepEqual(await ids({types: [NO_METER]}), [e3.id, e2.id]);
  assert.deepEqual(await ids({object_id: 'mtr_a', types: [NO_METER]}), [e3.id]);
  assert.deepEqual(await ids({created: {gt: e1.created}}), [e3.id, e2.id]);
  assert.deepEqual(await ids({created: {gte: e2.created, lte: e2.created}}), [e2.id]);
  assert.deepEqual(await ids({created: {lt: e3.created}}), [e2.id, e1.id]);
  assert.deepEqual(await ids({limit: 1, types: [METER_ERROR, NO_METER]}), [e3.id, e2.id, e1.id]);

  const page = await stripe.v2.core.events.list({limit: 2});
  assert.equal(page.data.length, 2);
  assert.ok(page.next_page_url);

  const got = await stripe.v2.core.events.retrieve(e1.id);
  assert.equal(got.id, e1.id);
  assert.equal(got.type, METER_ERROR);
  assert.equal(got.related_object.id, 'mtr_a');
  assert.equal(got.data.developer_message_summary, 'There is 1 invalid event');
});

test('idempotent replay and 409', async () => {
  const {stripe} = freshClient();
  const idempotencyKey = `node-${crypto.randomUUID()}`;
  const a = await stripe.v2.core.eventDestinations.create(webhook({name: 'idem'}), {idempotencyKey});
  const b = await stripe.v2.core.eventDestinations.create(webhook({name: 'idem'}), {idempotencyKey});
  assert.equal(b.id, a.id);
  const all = [];
  for await (const d of stripe.v2.core.eventDestinations.list()) all.push(d.id);
  assert.deepEqual(all, [a.id]);

  await rejects(
    stripe.v2.core.eventDestinations.create(webhook({name: 'different'}), {idempotencyKey}),
    Stripe.errors.StripeIdempotencyError,
    409,
    'idempotency_error',
  );
});

test('delete and 404', async () => {
  const {stripe} = freshClient();
  const ed = await stripe.v2.core.eventDestinations.create(webhook());
  const deleted = await stripe.v2.core.eventDestinations.del(ed.id);
  assert.equal(deleted.id, ed.id);
  assert.equal(deleted.object, 'v2.core.event_destination');
  await rejects(
    stripe.v2.core.eventDestinations.retrieve(ed.id),
    Stripe.errors.StripeInvalidRequestError,
    404,
    'not_found',
  );
});

test('400 invalid_fields', async () => {
  const {stripe} = freshClient();
  const err = await rejects(
    stripe.v2.core.eventDestinations.create(webhook({event_payload: 'bogus'})),
    Stripe.errors.StripeInvalidRequestError,
    400,
    'invalid_fields',
  );
  assert.match(err.message, /event_payload/);
});

test('401 with a bad key', async () => {
  const bad = client(`sk_test_${'0'.repeat(24)}`);
  await rejects(bad.v2.core.eventDestinations.list(), Stripe.errors.StripeAuthenticationError, 401);
});

test('stripeContext acts in a connected account', async () => {
  const parent = createAccount();
  const child = createAccount(parent.id);
  const inChild = client(parent.skTest, {stripeContext: child.id});
  const ed = await inChild.v2.core.eventDestinations.create(webhook({name: 'child'}));
  assert.equal((await inChild.v2.core.eventDestinations.retrieve(ed.id)).id, ed.id);
  await rejects(
    client(parent.skTest).v2.core.eventDestinations.retrieve(ed.id),
    Stripe.errors.StripeInvalidRequestError,
    404,
    'not_found',
  );
  const ping = await inChild.v2.core.eventDestinations.ping(ed.id);
  assert.equal(ping.context, child.id);
});

test('live mode', async () => {
  const acct = createAccount();
  const live = client(acct.skLive);
  const ed = await live.v2.core.eventDestinations.create(webhook());
  assert.equal(ed.livemode, true);
  assert.ok(ed.id.startsWith('ed_') && !ed.id.includes('_test_'), ed.id);
  await rejects(
    live.v2.core.eventDestinations.create(webhook({webhook_endpoint: {url: 'http://127.0.0.1:9/insecure'}})),
    Stripe.errors.StripeInvalidRequestError,
    400,
    'invalid_fields',
  );
});
