'use strict';
// Which database the conformance eventd uses. By default the embedded SQLite database in the test's temp data dir.
// With EVENTD_TEST_DATABASE_URL=postgres://user@host:port/db, each test file creates its own schema
// `eventd_c_<random>` in that database (with `psql`), runs eventd and its CLI with
// EVENTD_DATABASE_URL=<url>?options=-c search_path=<schema>, and drops the schema (CASCADE) when it ends.
// Not reaching PostgreSQL when it was asked for is an error, never a silent fallback to SQLite.

const {execFileSync} = require('node:child_process');
const crypto = require('node:crypto');

const DATABASE_URL_ENV = 'EVENTD_TEST_DATABASE_URL';
const baseUrl = process.env[DATABASE_URL_ENV] || '';

function redact(url) {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

function randomName() {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return 'eventd_c_' + Array.from(crypto.randomBytes(12), (b) => chars[b % chars.length]).join('');
}

const schema = baseUrl ? randomName() : null;
let created = false;

function psql(sql) {
  try {
    execFileSync('psql', ['--no-psqlrc', '-v', 'ON_ERROR_STOP=1', '-q', '-d', baseUrl, '-c', sql], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 30000,
    });
  } catch (e) {
    const why = e.code === 'ENOENT' ? '`psql` is not installed' : String(e.stderr || e.message).trim();
    throw new Error(`psql ${redact(baseUrl)} -c ${JSON.stringify(sql)} failed: ${why}`);
  }
}

/** One line naming the backend, for the test output. */
function describe() {
  if (!schema) return `eventd backend: SQLite (embedded, temporary data dir; set ${DATABASE_URL_ENV} for PostgreSQL)`;
  return `eventd backend: PostgreSQL ${redact(baseUrl)}, schema ${schema} (dropped at the end)`;
}

/** Creates the schema (PostgreSQL only); call once before starting eventd. */
function setup() {
  if (!schema) return;
  if (/[?&]options=/.test(baseUrl)) {
    throw new Error(`${DATABASE_URL_ENV} must not set \`options\` (the suite sets search_path): ${redact(baseUrl)}`);
  }
  psql(`CREATE SCHEMA ${schema}`);
  created = true;
}

/** Drops the schema (PostgreSQL only); call after eventd has stopped. */
function teardown() {
  if (!created) return;
  created = false;
  try {
    psql(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } catch (e) {
    process.stderr.write(`warning: could not drop schema ${schema}: ${e.message}\n`);
  }
}

/** The environment for eventd and its CLI: PostgreSQL in this file's schema, or SQLite in dataDir. */
function env(dataDir) {
  const out = {...process.env, EVENTD_DATA_DIR: dataDir};
  if (schema) {
    const options = encodeURIComponent(`-c search_path=${schema}`);
    out.EVENTD_DATABASE_URL = `${baseUrl}${baseUrl.includes('?') ? '&' : '?'}options=${options}`;
  } else {
    // Never pick up a database URL from the caller's shell in the SQLite run.
    delete out.EVENTD_DATABASE_URL;
  }
  return out;
}

module.exports = {describe, setup, teardown, env, schema};
