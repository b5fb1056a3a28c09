// PouchDB 9.0.0 <-> Outpost CouchDB-replication-endpoint harness.
//
// Usage:
//   OUTPOST_COUCH=http://127.0.0.1:PORT/couch/field \
//   [OUTPOST_TOKEN=secret] [OUTPOST_DB=orders] [RESUME_SIGNAL=/tmp/x] \
//   PHASE=push-pull|conflicts|live|resume|resume-1|denied \
//   node pouchdb.test.mjs
//
// OUTPOST_COUCH  server root of one Outpost database; each CouchDB database
//                ("table") lives at ${OUTPOST_COUCH}/<name>.
// OUTPOST_TOKEN  optional; sent as HTTP Basic auth, user "outpost", password
//                TOKEN, by putting it into the URL like an app would:
//                http://outpost:TOKEN@host:port/couch/field/<name>
// OUTPOST_DB     optional table name. Default: a fresh name per run,
//                "pouch_<phase>_<random>" (PouchDB PUTs it if GET 404s).
//                All doc ids carry a per-run tag, so sharing a table between
//                runs is safe; comparisons only look at this run's ids.
// RESUME_SIGNAL  (resume phases) path of a file to wait for after printing
//                READY_FOR_RESTART; if unset the script continues at once.
//
// Output: exactly one JSON line on stdout at the end ({"phase":..,"ok":true,..}),
// exit 0 on success; on failure a JSON line with ok:false + message on stdout,
// the message on stderr, exit 1. Resume phases additionally print the line
// READY_FOR_RESTART before it. Every wait is bounded.
//
// The unmodified `pouchdb` package (9.0.0), with the memory adapter for the
// local databases so that nothing is left on disk.

import fs from 'node:fs';
import crypto from 'node:crypto';
import PouchDB from 'pouchdb';
import MemoryAdapter from 'pouchdb-adapter-memory';

PouchDB.plugin(MemoryAdapter);

// ---------------------------------------------------------------- settings

const PHASE = process.env.PHASE || '';
const COUCH = (process.env.OUTPOST_COUCH || '').replace(/\/+$/, '');
const TOKEN = process.env.OUTPOST_TOKEN || '';
const TAG = crypto.randomBytes(4).toString('hex'); // per-run id tag
const DB_NAME = process.env.OUTPOST_DB ||
  `pouch_${PHASE.replace(/[^a-z0-9]/g, '_')}_${TAG}`;

const STEP_MS = 30_000;        // max for any single replication / wait
const SIGNAL_MS = 60_000;      // max wait for RESUME_SIGNAL
const WATCHDOG_MS = 240_000;   // hard cap for the whole process

// --------------------------------------------------------------- reporting

let finished = false;
const unhandled = [];

function finish(ok, info) {
  if (finished) return;
  finished = true;
  const line = JSON.stringify({ phase: PHASE, ok, db: DB_NAME, tag: TAG, ...info });
  process.stdout.write(line + '\n');
  if (!ok) process.stderr.write(`FAIL [${PHASE}]: ${info && info.error}\n`);
  // Exit explicitly: live replications / back-off timers may still be pending.
  setTimeout(() => process.exit(ok ? 0 : 1), 50);
}

function fail(msg, extra = {}) {
  const e = new Error(msg);
  e.extra = extra;
  throw e;
}

function check(cond, msg, extra) {
  if (!cond) fail(msg, extra);
}

// PouchDB has a few internal promise chains without catch; a rejection there
// usually means the server answered something PouchDB could not parse.
process.on('unhandledRejection', (err) => {
  unhandled.push(String((err && (err.stack || err.message)) || err));
});

const watchdog = setTimeout(() => {
  finish(false, { error: `watchdog: phase did not finish within ${WATCHDOG_MS} ms` });
}, WATCHDOG_MS);
watchdog.unref();

// ----------------------------------------------------------------- helpers

function remoteUrl() {
  const u = new URL(`${COUCH}/${DB_NAME}`);
  if (TOKEN) {
    u.username = 'outpost';
    u.password = TOKEN; // URL setter percent-encodes; PouchDB decodes it again
  }
  return u.href;
}

// A remote handle exactly as an app would create one.
function remote() {
  return new PouchDB(remoteUrl());
}

let localCounter = 0;
function local(name) {
  return new PouchDB(`${name}_${TAG}_${++localCounter}`, { adapter: 'memory' });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function withTimeout(promise, ms, what, onTimeout) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => {
      if (onTimeout) onTimeout();
      reject(new Error(`timeout after ${ms} ms: ${what}`));
    }, ms);
  });
  try {
    return await Promise.race([promise, t]);
  } finally {
    clearTimeout(timer);
  }
}

// Poll `fn` (async, returns truthy when done) every `every` ms, max `ms`.
async function waitFor(fn, ms, what, every = 100) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) fail(`timeout after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

// Stable JSON (sorted keys) for deep comparison.
function canon(v) {
  if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
  if (v && typeof v === 'object') {
    return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}';
  }
  return JSON.stringify(v);
}

// One-shot replication with a time bound. Collects 'denied' events.
async function replicate(src, tgt, opts = {}, ms = STEP_MS, what = 'replicate') {
  const rep = PouchDB.replicate(src, tgt, opts);
  const denied = [];
  rep.on('denied', (err) => denied.push({ id: err.id, name: err.name, status: err.status, reason: err.reason || err.message }));
  // With retry:true, errors are swallowed and retried; remember the last one.
  let requestErrors = 0;
  let lastRequestError;
  rep.on('requestError', (err) => { requestErrors++; lastRequestError = errText(err); });
  let result;
  try {
    result = await withTimeout(rep, ms, what, () => rep.cancel());
  } catch (err) {
    const r = err && err.result;
    fail(`${what} failed: ${errText(err)}`, { ...(r ? { result: slimResult(r) } : {}), requestErrors, lastRequestError });
  }
  return { result, denied, requestErrors, lastRequestError };
}

function errText(err) {
  if (!err) return String(err);
  const parts = [err.status, err.name, err.message || err.reason].filter((x) => x !== undefined && x !== '');
  return parts.join(' ') || String(err);
}

// The replication result minus bulky fields.
function slimResult(r) {
  return {
    ok: r.ok, status: r.status, docs_read: r.docs_read, docs_written: r.docs_written,
    doc_write_failures: r.doc_write_failures, last_seq: r.last_seq,
    errors: (r.errors || []).map((e) => ({ id: e.id, name: e.name, status: e.status, reason: e.reason || e.message })),
  };
}

function checkCleanResult(r, what) {
  check(r && r.ok === true, `${what}: result.ok !== true`, { result: slimResult(r || {}) });
  check(r.status === 'complete', `${what}: status ${r.status}`, { result: slimResult(r) });
  check(r.doc_write_failures === 0, `${what}: doc_write_failures=${r.doc_write_failures}`, { result: slimResult(r) });
}

async function getOrNull(db, id, opts = {}) {
  try {
    return await db.get(id, opts);
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

// Rows of allDocs({include_docs, conflicts}) restricted to `ids`.
async function snapshot(db, ids) {
  const res = await db.allDocs({ include_docs: true, conflicts: true });
  const rows = res.rows.filter((r) => ids.has(r.id)).map((r) => ({ id: r.id, rev: r.value.rev, doc: r.doc }));
  return rows;
}

// ------------------------------------------------------------ test data

// A body exercising JSON types Outpost must round-trip exactly.
function richBody(i) {
  return {
    type: 'order',
    n: i,
    price: 1.5,
    qty: 42,
    neg: -7,
    zero: 0,
    small: 1e-7,
    maxSafe: 9007199254740991,
    yes: true,
    no: false,
    nothing: null,
    text: 'héllo wörld — 日本語 — emoji 🚀 — "quotes" \\ back\nslash',
    empty: '',
    tags: ['a', 'b', 'ç'],
    mixed: [1, 'two', 3.25, null, true, { k: 'v' }, [[]]],
    nested: { a: { b: { c: [1, 2, { d: 'e' }] } }, deep: { x: null } },
    emptyObj: {},
    emptyArr: [],
    'key with space': 1,
    'ключ': 'значение',
    'a.b': 'dot',
    $dollar: 'd',
  };
}

// ---------------------------------------------------------------- phases

async function phasePushPull() {
  const A = local('A');
  const R = remote();

  // 20 docs: 17 plain ids, one with '/', one with unicode+space, one design doc.
  const ids = [];
  for (let i = 0; i < 17; i++) ids.push(`${TAG}-doc-${String(i).padStart(2, '0')}`);
  ids.push(`${TAG}/with/slash`);
  ids.push(`${TAG}-ünï cødé ✓`);
  ids.push(`_design/x_${TAG}`);
  const docs = ids.map((id, i) => id.startsWith('_design/')
    ? { _id: id, language: 'javascript', views: { by_n: { map: 'function (doc) { emit(doc.n); }' } }, n: i }
    : { _id: id, ...richBody(i) });
  const put = await A.bulkDocs(docs);
  check(put.every((r) => r.ok), 'local bulkDocs failed', { put });

  // Updates: 5 docs once, one of them (and the '/' doc) a second time.
  const updated = [ids[1], ids[2], ids[3], ids[17], ids[19]];
  for (const id of updated) {
    const d = await A.get(id);
    d.updated = 1;
    d.price = 2.25;
    await A.put(d);
  }
  for (const id of [ids[1], ids[17]]) {
    const d = await A.get(id);
    d.updated = 2;
    d.list = [{ deep: [1.5, 42, null] }];
    await A.put(d);
  }
  // Deletes: one untouched, one updated, one deleted right after creation.
  const deleted = [ids[4], ids[2], ids[5]];
  for (const id of deleted) {
    const d = await A.get(id);
    await A.remove(d);
  }

  const push = await replicate(A, R, {}, STEP_MS, 'push A->remote');
  checkCleanResult(push.result, 'push');
  check(push.denied.length === 0, 'push: denied events', { denied: push.denied });

  const B = local('B');
  const pull = await replicate(R, B, {}, STEP_MS, 'pull remote->B');
  checkCleanResult(pull.result, 'pull');

  // Compare live docs (ids, revs, bodies, _conflicts) via allDocs.
  const idSet = new Set(ids);
  const sa = await snapshot(A, idSet);
  const sb = await snapshot(B, idSet);
  check(sa.length === ids.length - deleted.length, `A has ${sa.length} live docs, expected ${ids.length - deleted.length}`);
  const diffs = [];
  const byIdB = new Map(sb.map((r) => [r.id, r]));
  for (const ra of sa) {
    const rb = byIdB.get(ra.id);
    if (!rb) { diffs.push({ id: ra.id, problem: 'missing in B' }); continue; }
    if (ra.rev !== rb.rev) diffs.push({ id: ra.id, problem: 'rev', a: ra.rev, b: rb.rev });
    else if (canon(ra.doc) !== canon(rb.doc)) diffs.push({ id: ra.id, problem: 'body', a: ra.doc, b: rb.doc });
  }
  for (const rb of sb) if (!sa.find((r) => r.id === rb.id)) diffs.push({ id: rb.id, problem: 'extra in B (should be deleted?)' });
  check(diffs.length === 0, 'A and B differ after push+pull', { diffs });

  // Revision histories must have travelled too (_revisions).
  const histDiffs = [];
  for (const ra of sa) {
    const ha = (await A.get(ra.id, { revs: true }))._revisions;
    const hb = (await B.get(ra.id, { revs: true }))._revisions;
    if (canon(ha) !== canon(hb)) histDiffs.push({ id: ra.id, a: ha, b: hb });
  }
  check(histDiffs.length === 0, '_revisions differ between A and B', { histDiffs });

  // Deleted docs: absent from allDocs in B, and B's tombstone rev equals A's.
  const tomb = [];
  for (const id of deleted) {
    const la = await A.get(id, { open_revs: 'all' });
    const lb = await B.get(id, { open_revs: 'all' });
    const revA = la.map((x) => x.ok && x.ok._rev).sort();
    const revB = lb.map((x) => x.ok && x.ok._rev).sort();
    const delB = lb.every((x) => x.ok && x.ok._deleted === true);
    if (canon(revA) !== canon(revB) || !delB) tomb.push({ id, a: revA, b: revB, deletedInB: delB });
  }
  check(tomb.length === 0, 'tombstones differ', { tomb });

  // PouchDB's winner of every document of this run, deleted ones included, for the Rust side to
  // compare with Outpost's.
  const winners = {};
  for (const id of ids) {
    const leaves = await B.get(id, { open_revs: 'all' });
    const doc = await B.get(id).catch(() => null);
    winners[id] = doc ? doc._rev : leaves.map((x) => x.ok && x.ok._rev).sort().pop();
  }
  return {
    docs: ids.length, live: sa.length, deleted: deleted.length,
    push: slimResult(push.result), pull: slimResult(pull.result), winners,
  };
}

async function phaseConflicts() {
  const R = remote();
  const A = local('A');
  const B = local('B');
  const id = `${TAG}-conflict`;

  // Common ancestor, replicated A -> remote -> B.
  await A.put({ _id: id, v: 0, who: 'base' });
  checkCleanResult((await replicate(A, R, {}, STEP_MS, 'push base')).result, 'push base');
  checkCleanResult((await replicate(R, B, {}, STEP_MS, 'pull base into B')).result, 'pull base');
  const baseB = await getOrNull(B, id);
  check(baseB, 'B did not receive the base doc');

  // Divergent offline edits (different bodies => different rev hashes).
  const a = await A.get(id);
  await A.put({ ...a, v: 1, who: 'A', onlyA: [1.5] });
  const b = await B.get(id);
  await B.put({ ...b, v: 1, who: 'B', onlyB: { x: 42 } });

  // Both push to the remote, then both pull back.
  checkCleanResult((await replicate(A, R, {}, STEP_MS, 'push A')).result, 'push A');
  checkCleanResult((await replicate(B, R, {}, STEP_MS, 'push B')).result, 'push B');
  checkCleanResult((await replicate(R, A, {}, STEP_MS, 'pull into A')).result, 'pull A');
  checkCleanResult((await replicate(R, B, {}, STEP_MS, 'pull into B')).result, 'pull B');

  const da = await A.get(id, { conflicts: true });
  const db = await B.get(id, { conflicts: true });
  const ca = (da._conflicts || []).slice().sort();
  const cb = (db._conflicts || []).slice().sort();
  check(da._rev === db._rev, 'A and B disagree on the winning rev', { a: da._rev, b: db._rev });
  check(canon(ca) === canon(cb), 'A and B disagree on _conflicts', { a: ca, b: cb });
  check(ca.length === 1, `expected exactly 1 conflict, got ${ca.length}`, { conflicts: ca });

  // CouchDB's rule for two non-deleted leaves at equal depth: greater rev string wins.
  const leaves = [da._rev, ...ca];
  const expectedWinner = leaves.slice().sort((x, y) => {
    const [nx, hx] = [parseInt(x, 10), x.slice(x.indexOf('-') + 1)];
    const [ny, hy] = [parseInt(y, 10), y.slice(y.indexOf('-') + 1)];
    return nx !== ny ? ny - nx : (hx < hy ? 1 : hx > hy ? -1 : 0);
  })[0];
  check(da._rev === expectedWinner, 'winner is not the CouchDB-rule winner', { winner: da._rev, expectedWinner, leaves });
  const winnerBody = { ...da };
  delete winnerBody._conflicts;

  // Resolve on A: delete the losing leaf, then sync A and B with the remote.
  for (const rev of ca) await A.remove(id, rev);
  const sa = A.sync(R);
  const syncA = await withTimeout(sa, STEP_MS, 'sync A', () => sa.cancel());
  checkCleanResult(syncA.push, 'sync A push');
  checkCleanResult(syncA.pull, 'sync A pull');
  const sb = B.sync(R);
  const syncB = await withTimeout(sb, STEP_MS, 'sync B', () => sb.cancel());
  checkCleanResult(syncB.push, 'sync B push');
  checkCleanResult(syncB.pull, 'sync B pull');

  const fa = await A.get(id, { conflicts: true });
  const fb = await B.get(id, { conflicts: true });
  check(!fa._conflicts && !fb._conflicts, 'conflicts remain after resolution', { a: fa._conflicts, b: fb._conflicts });
  check(fa._rev === fb._rev && fa._rev === da._rev, 'final revs differ', { a: fa._rev, b: fb._rev, winner: da._rev });

  // Also pull into a fresh local to see what the remote now serves.
  const C = local('C');
  checkCleanResult((await replicate(R, C, {}, STEP_MS, 'pull into C')).result, 'pull C');
  const fc = await C.get(id, { conflicts: true });
  check(!fc._conflicts && fc._rev === da._rev, 'fresh pull sees a different state', { c: fc });

  return {
    id,
    winner_rev: da._rev,            // compare with Outpost's winner for `id`
    losing_revs: ca,
    winner_body: winnerBody,
    resolved_rev: fa._rev,
    deleted_loser_leaves: (await A.get(id, { open_revs: 'all' }))
      .filter((x) => x.ok && x.ok._deleted).map((x) => x.ok._rev),
  };
}

async function phaseLive() {
  const A = local('A');
  const B = local('B');
  const mk = () => ({ error: [], denied: 0, paused: 0, active: 0, change: 0, requestErrors: 0, lastRequestError: null });
  const events = { A: mk(), B: mk() };
  let fatal = null;

  function start(db, name) {
    const s = db.sync(remote(), { live: true, retry: true });
    const ev = events[name];
    s.on('change', () => { ev.change++; });
    s.on('paused', () => { ev.paused++; });
    s.on('active', () => { ev.active++; });
    s.on('denied', () => { ev.denied++; });
    s.on('error', (err) => { ev.error.push(errText(err)); fatal = fatal || `${name}: ${errText(err)}`; });
    // retry:true hides transient errors; they surface as 'requestError' on
    // the underlying push/pull replications.
    for (const r of [s.push, s.pull]) {
      r.on('requestError', (err) => { ev.requestErrors++; ev.lastRequestError = errText(err); });
    }
    return s;
  }

  const sA = start(A, 'A');
  const sB = start(B, 'B');
  const latency = {};
  try {
    const idA = `${TAG}-live-from-A`;
    let t0 = Date.now();
    await A.put({ _id: idA, from: 'A', price: 1.5 });
    await waitFor(async () => { if (fatal) fail(fatal); return getOrNull(B, idA); }, STEP_MS, 'B to see doc written on A')
      .catch((e) => fail(e.message, { events }));
    latency.a_to_b_ms = Date.now() - t0;

    const idB = `${TAG}-live-from-B`;
    t0 = Date.now();
    await B.put({ _id: idB, from: 'B', qty: 42 });
    await waitFor(async () => { if (fatal) fail(fatal); return getOrNull(A, idB); }, STEP_MS, 'A to see doc written on B')
      .catch((e) => fail(e.message, { events }));
    latency.b_to_a_ms = Date.now() - t0;

    // An update round-trip too.
    t0 = Date.now();
    const d = await A.get(idB);
    await A.put({ ...d, editedBy: 'A' });
    await waitFor(async () => { if (fatal) fail(fatal); const x = await getOrNull(B, idB); return x && x.editedBy === 'A'; }, STEP_MS, 'B to see update written on A')
      .catch((e) => fail(e.message, { events }));
    latency.update_a_to_b_ms = Date.now() - t0;
  } finally {
    sA.cancel();
    sB.cancel();
  }
  // cancel() makes both Sync promises resolve; bound the wait anyway.
  const endA = await withTimeout(sA, 10_000, 'live sync A to stop after cancel');
  const endB = await withTimeout(sB, 10_000, 'live sync B to stop after cancel');
  check(!fatal, `live sync error: ${fatal}`);
  return {
    latency, events,
    final: { A: { push: endA.push.status, pull: endA.pull.status }, B: { push: endB.push.status, pull: endB.pull.status } },
  };
}

async function phaseResume() {
  const A = local('A');
  const R1 = remote();
  const first = [];
  for (let i = 0; i < 50; i++) first.push({ _id: `${TAG}-r-${String(i).padStart(3, '0')}`, i, price: 1.5 });
  await A.bulkDocs(first);
  const rep1 = await replicate(A, R1, {}, STEP_MS, 'first push (50 docs)');
  checkCleanResult(rep1.result, 'first push');
  check(rep1.result.docs_written === 50, `first push wrote ${rep1.result.docs_written}, expected 50`);

  process.stdout.write('READY_FOR_RESTART\n');
  const signal = process.env.RESUME_SIGNAL;
  if (signal) {
    await waitFor(async () => fs.existsSync(signal), SIGNAL_MS, `signal file ${signal}`);
  }

  const more = [];
  for (let i = 50; i < 55; i++) more.push({ _id: `${TAG}-r-${String(i).padStart(3, '0')}`, i, price: 1.5 });
  await A.bulkDocs(more);

  // Fresh remote handle (as after an app restart): PouchDB re-reads the
  // server root `uuid`, so the replication id only matches if it is stable.
  const R2 = remote();
  // Record the `since` the replicator starts from and how many ids it asks
  // _revs_diff about: proof that the checkpoint was found and used.
  const sinces = [];
  const origChanges = A.changes.bind(A);
  A.changes = (opts, cb) => { sinces.push(opts && opts.since); return origChanges(opts, cb); };
  let revsDiffIds = 0;
  const origRevsDiff = R2.revsDiff.bind(R2);
  R2.revsDiff = (req, ...rest) => { revsDiffIds += Object.keys(req).length; return origRevsDiff(req, ...rest); };

  const rep2 = await replicate(A, R2, {
    retry: true,
    // Bounded back-off so a restarting server is re-tried quickly.
    back_off_function: (d) => Math.min(1000, d ? d * 2 : 200),
  }, STEP_MS, 'second push (5 more docs, retry)');
  checkCleanResult(rep2.result, 'second push');
  const r2 = slimResult(rep2.result);
  check(r2.docs_read === 5 && r2.docs_written === 5, `second push read/wrote ${r2.docs_read}/${r2.docs_written}, expected 5/5`, { second: r2 });
  check(sinces.length > 0 && sinces[0] !== 0, `second push started from since=${JSON.stringify(sinces[0])} (checkpoint not used)`, { sinces });
  check(revsDiffIds === 5, `second push asked _revs_diff about ${revsDiffIds} ids, expected 5 (checkpoint not used)`, { sinces });
  return {
    first: slimResult(rep1.result),
    second: r2,
    second_start_since: sinces[0],
    first_last_seq: rep1.result.last_seq,
    second_revs_diff_ids: revsDiffIds,
  };
}

async function phaseDenied() {
  const A = local('A');
  const R = remote();
  const plain = [];
  for (let i = 0; i < 9; i++) plain.push({ _id: `${TAG}-ok-${i}`, i, price: 1.5 });
  const attId = `${TAG}-with-attachment`;
  const withAtt = {
    _id: attId,
    note: 'Outpost should refuse this one with {"error":"forbidden"}',
    _attachments: {
      'note.txt': { content_type: 'text/plain', data: Buffer.from('hello outpost').toString('base64') },
    },
  };
  const put = await A.bulkDocs([...plain.slice(0, 4), withAtt, ...plain.slice(4)]);
  check(put.every((r) => r.ok), 'local bulkDocs failed', { put });

  const push = await replicate(A, R, {}, STEP_MS, 'push with one refused doc');
  const r = push.result;
  check(r.ok === true && r.status === 'complete', `push did not complete: ok=${r.ok} status=${r.status}`, { result: slimResult(r) });
  check(r.doc_write_failures === 1, `doc_write_failures=${r.doc_write_failures}, expected 1`, { result: slimResult(r) });
  check(r.docs_written === 9, `docs_written=${r.docs_written}, expected 9`, { result: slimResult(r) });
  check(push.denied.length === 1 && push.denied[0].id === attId, 'expected exactly one denied event for the attachment doc', { denied: push.denied });

  // What did the remote keep? Pull everything into a fresh local.
  const C = local('C');
  const pull = await replicate(R, C, {}, STEP_MS, 'pull back into C');
  checkCleanResult(pull.result, 'pull back');
  const missing = [];
  for (const d of plain) if (!(await getOrNull(C, d._id))) missing.push(d._id);
  check(missing.length === 0, 'accepted docs missing on remote', { missing });
  const refusedPresent = !!(await getOrNull(C, attId));
  check(!refusedPresent, 'refused doc is present on the remote');
  return { push: slimResult(r), denied: push.denied, pull: slimResult(pull.result) };
}

// Two Outpost servers, a PouchDB on each (P1 with OUTPOST_COUCH and OUTPOST_TOKEN, P2 with
// OUTPOST_COUCH_2 and OUTPOST_TOKEN_2), writes on
// all four. Twice the harness prints STEP_1 / STEP_2 and waits for `${RESUME_SIGNAL}.1` / `.2` while
// the caller syncs the two servers (and writes on them natively); then each PouchDB pulls from its
// server. Reports every document of the run as each PouchDB holds it: winner and conflicts.
async function phaseFour() {
  const second = (process.env.OUTPOST_COUCH_2 || '').replace(/\/+$/, '');
  check(second, 'OUTPOST_COUCH_2 is not set');
  const R1 = remote();
  const u = new URL(`${second}/${DB_NAME}`);
  const token2 = process.env.OUTPOST_TOKEN_2 || '';
  if (token2) {
    u.username = 'outpost';
    u.password = token2;
  }
  const R2 = new PouchDB(u.href);
  const P1 = local('P1');
  const P2 = local('P2');
  const shared = `${TAG}-shared`;
  const pause = async (n) => {
    process.stdout.write(`STEP_${n}\n`);
    const signal = process.env.RESUME_SIGNAL;
    if (signal) await waitFor(async () => fs.existsSync(`${signal}.${n}`), SIGNAL_MS, `signal ${signal}.${n}`);
  };
  for (let i = 0; i < 5; i++) {
    await P1.put({ _id: `${TAG}-p1-${i}`, from: 'P1', i, price: 2.5 });
    await P2.put({ _id: `${TAG}-p2-${i}`, from: 'P2', i, tags: ['x', i] });
  }
  await P1.put({ _id: shared, v: 0 });
  checkCleanResult((await replicate(P1, R1, {}, STEP_MS, 'P1 -> server 1')).result, 'P1 push');
  checkCleanResult((await replicate(P2, R2, {}, STEP_MS, 'P2 -> server 2')).result, 'P2 push');
  await pause(1);
  checkCleanResult((await replicate(R1, P1, {}, STEP_MS, 'server 1 -> P1')).result, 'P1 pull');
  checkCleanResult((await replicate(R2, P2, {}, STEP_MS, 'server 2 -> P2')).result, 'P2 pull');
  // The same document edited on both PouchDBs: a conflict every party must settle the same way.
  const s1 = await P1.get(shared);
  const s2 = await P2.get(shared);
  await P1.put({ ...s1, v: 1, who: 'P1' });
  await P2.put({ ...s2, v: 1, who: 'P2', extra: [1, 2] });
  checkCleanResult((await replicate(P1, R1, {}, STEP_MS, 'P1 -> server 1 again')).result, 'P1 push 2');
  checkCleanResult((await replicate(P2, R2, {}, STEP_MS, 'P2 -> server 2 again')).result, 'P2 push 2');
  await pause(2);
  checkCleanResult((await replicate(R1, P1, {}, STEP_MS, 'server 1 -> P1 again')).result, 'P1 pull 2');
  checkCleanResult((await replicate(R2, P2, {}, STEP_MS, 'server 2 -> P2 again')).result, 'P2 pull 2');
  const view = async (db) => {
    const all = await db.allDocs({ include_docs: true, conflicts: true });
    const out = {};
    for (const row of all.rows) {
      const { _id, _rev, _conflicts, ...body } = row.doc;
      out[_id] = { rev: _rev, conflicts: (_conflicts || []).sort(), body: canon(body) };
    }
    return out;
  };
  const v1 = await view(P1);
  const v2 = await view(P2);
  check(canon(v1) === canon(v2), 'the two PouchDBs differ', { v1, v2 });
  return { docs: v1 };
}

// ------------------------------------------------------------------- main

const PHASES = {
  'push-pull': phasePushPull,
  conflicts: phaseConflicts,
  live: phaseLive,
  resume: phaseResume,
  'resume-1': phaseResume, // same single-process flow (memory adapter cannot survive a restart)
  denied: phaseDenied,
  four: phaseFour,
};

async function main() {
  if (!COUCH) fail('OUTPOST_COUCH is not set (e.g. http://127.0.0.1:PORT/couch/field)');
  const fn = PHASES[PHASE];
  if (!fn) fail(`unknown PHASE ${JSON.stringify(PHASE)}; one of ${Object.keys(PHASES).join(', ')}`);
  const info = await fn();
  check(unhandled.length === 0, 'unhandled promise rejection(s) inside PouchDB', { unhandled });
  finish(true, info);
}

main().catch((err) => {
  finish(false, { error: err && err.message ? err.message : String(err), ...(err && err.extra), unhandled });
});
