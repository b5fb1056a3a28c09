// Opens a page in headless Chromium and prints what it leaves in window.__result, through the
// DevTools protocol (chrome-remote-interface). Used by crates/cli/tests/pouchdb.rs:
//   PAGE_URL=http://127.0.0.1:PORT/index.html?... [CHROMIUM=/usr/bin/chromium] node browser.mjs
// One JSON line on stdout ({"ok":true,...} from the page, or {"ok":false,"error":...}); exit 0 when
// the page reported ok. Every wait is bounded; Chromium is stopped and its profile removed at the end.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import CDP from 'chrome-remote-interface';

const PAGE_URL = process.env.PAGE_URL;
const CHROMIUM = process.env.CHROMIUM || 'chromium';
const RESULT_MS = 90_000;

function finish(chrome, profile, result) {
  try { chrome && chrome.kill('SIGKILL'); } catch { /* gone already */ }
  try { fs.rmSync(profile, { recursive: true, force: true }); } catch { /* best effort */ }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'outpost-chromium-'));
const chrome = spawn(CHROMIUM, [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', `--user-data-dir=${profile}`,
  '--remote-debugging-port=0', 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe'] });
const watchdog = setTimeout(() => finish(chrome, profile, { ok: false, error: 'watchdog: no result in time' }), RESULT_MS + 30_000);
chrome.on('exit', (code) => finish(null, profile, { ok: false, error: `chromium exited (${code})` }));

// Chromium prints "DevTools listening on ws://127.0.0.1:PORT/..." on stderr.
let stderr = '';
const port = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`chromium did not start: ${stderr}`)), 30_000);
  chrome.stderr.on('data', (chunk) => {
    stderr += chunk;
    const m = stderr.match(/DevTools listening on ws:\/\/[^:]+:(\d+)\//);
    if (m) { clearTimeout(timer); resolve(Number(m[1])); }
  });
}).catch((e) => finish(chrome, profile, { ok: false, error: String(e) }));

let client;
try {
  client = await CDP({ port });
  const { Page, Runtime } = client;
  const logs = [];
  Runtime.consoleAPICalled(({ type, args }) => logs.push(`${type}: ${args.map((a) => a.value ?? a.description).join(' ')}`));
  Runtime.exceptionThrown(({ exceptionDetails }) => logs.push(`exception: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`));
  await Runtime.enable();
  await Page.enable();
  await Page.navigate({ url: PAGE_URL });
  const deadline = Date.now() + RESULT_MS;
  let result = null;
  while (!result && Date.now() < deadline) {
    const { result: r } = await Runtime.evaluate({ expression: 'JSON.stringify(window.__result ?? null)', returnByValue: true });
    result = JSON.parse(r.value ?? 'null');
    if (!result) await new Promise((res) => setTimeout(res, 200));
  }
  const { result: status } = await Runtime.evaluate({ expression: 'document.getElementById("status")?.textContent', returnByValue: true });
  await client.close();
  clearTimeout(watchdog);
  finish(chrome, profile, { ...(result ?? { ok: false, error: 'the page set no result in time' }), status: status.value, logs });
} catch (e) {
  finish(chrome, profile, { ok: false, error: String(e && e.stack || e) });
}
