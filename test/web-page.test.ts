/**
 * The introspect page in a real browser: Debian's headless Chromium, driven
 * by playwright-core, against a `vrouter run` daemon in a network namespace.
 *
 *   node0: a1 10.1.1.3, a2 10.1.1.4 (vn1 10.1.1.0/24); vn2 has no pod
 *
 * The daemon's introspect API listens on 127.0.0.1:8085 inside the node's
 * namespace. The browser runs here, in the test's namespace, so a relay
 * carries its connections there: a listener on 127.0.0.1:<random> here
 * hands each connection to a Unix socket (the filesystem is shared across
 * network namespaces) served by a forwarder in the node namespace, which
 * connects to 127.0.0.1:8085. Nothing listens outside the loopback.
 *
 * The test creates a UDP flow a1 -> a2, then checks that the page lists the
 * pods and that flow, shows the routes of vn1, and that the rate chart
 * updates with the traffic. VROUTER_WEB_SCREENSHOT=<file.png> keeps a
 * screenshot. Needs root, iproute2, chromium (Debian package chromium).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { Topology, requireCommands } from './support/netns';
import { ProcessOutput, VrouterCluster } from './support/vrouter-cluster';

if (process.getuid?.() !== 0) throw new Error('the web page test needs root (network namespaces, TAP devices): run it as root, as .ci/run does');
requireCommands({ ip: 'iproute2', sysctl: 'procps' });
const CHROMIUM = '/usr/bin/chromium';
if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium fonts-liberation`);

const VNS = [
  { name: 'vn1', subnet: '10.1.1.0/24', gateway: '10.1.1.1' },
  { name: 'vn2', subnet: '10.2.2.0/24', gateway: '10.2.2.1' },
];
const A1 = { name: 'a1', vn: 'vn1', ip: '10.1.1.3', label: 20 };
const A2 = { name: 'a2', vn: 'vn1', ip: '10.1.1.4', label: 21 };
const FLOW = { sport: 40123, dport: 5555 };

/** In the node namespace: relays each connection on the Unix socket argv[1] to 127.0.0.1:8085. */
const FORWARDER = `
const net = require('node:net');
const server = net.createServer((client) => {
  const upstream = net.connect(8085, '127.0.0.1');
  client.pipe(upstream).pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
});
server.listen(process.argv[1], () => process.stdout.write('forwarding\\n'));`;

/** UDP from a fixed source port, every 20 ms for `seconds`: node <script> <sport> <dst> <dport> <seconds> */
const UDP_STREAM = `
const dgram = require('node:dgram');
const [sport, dst, dport, seconds] = process.argv.slice(1);
const socket = dgram.createSocket('udp4');
const until = Date.now() + Number(seconds) * 1000;
socket.bind(Number(sport), () => {
  const next = () => (Date.now() > until ? socket.close() : socket.send('page', Number(dport), dst, () => setTimeout(next, 20)));
  next();
});`;

/** The page's globals, for the functions that run in the browser (the project compiles without the DOM library). */
declare const document: { querySelector(selector: string): { textContent: string | null; dataset: Record<string, string | undefined> } | null };

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

describe('the introspect page in headless Chromium', { timeout: 180_000 }, () => {
  let topology: Topology;
  let cluster: VrouterCluster;
  let scratch: string;
  let relay: net.Server;
  let context: BrowserContext;
  let page: Page;
  let base: string;
  const pageErrors: string[] = [];

  before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vrouter-web-'));
    topology = new Topology();
    cluster = await VrouterCluster.start(topology, { nodes: 1, vns: VNS });
    await cluster.withLogs(async () => {
      await cluster.addPod(0, A1);
      await cluster.addPod(0, A2);
    });
    const socketPath = path.join(scratch, 'introspect.sock');
    const forwarder = new ProcessOutput(cluster.spawnNode(0, [process.execPath, '-e', FORWARDER, socketPath]));
    await forwarder.waitFor(/forwarding/, 10_000, 'the forwarder listening');
    relay = net.createServer((client) => {
      const upstream = net.connect(socketPath);
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(relay.address() as net.AddressInfo).port}`;
    context = await chromium.launchPersistentContext(path.join(scratch, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1100 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (error) => pageErrors.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(`console: ${message.text()}`);
    });
  });

  after(async () => {
    try {
      await context?.close();
      relay?.close();
      await cluster?.stop();
    } finally {
      await topology?.destroy();
      if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
    }
  });

  test('the page shows the pods, the routes, a flow the test made, and the chart follows the traffic', () =>
    cluster.withLogs(async () => {
      await page.goto(`${base}/`);
      assert.equal(await page.title(), 'vrouter introspect');
      // The interfaces, with the pods behind them.
      await page.waitForSelector('#vifs tbody tr[data-pod="a1"]', { timeout: 10_000 });
      const vifRows = await page.$$eval('#vifs tbody tr', (rows) => rows.map((row) => [...row.querySelectorAll('td')].slice(0, 6).map((cell) => cell.textContent)));
      assert.deepEqual(vifRows, [
        ['0', 'underlay', 'fabric', '', '198.18.0.11', ''],
        ['1', 'vtap0', 'virtual', 'a1', '10.1.1.3', 'vn1'],
        ['2', 'vtap1', 'virtual', 'a2', '10.1.1.4', 'vn1'],
      ]);
      await page.waitForFunction(() => document.querySelector('#node-name')?.textContent === 'node0');
      assert.equal(await page.title(), 'vrouter node0');

      // VRFs and the routes of the first one.
      await page.waitForSelector('#routes tbody tr[data-prefix="10.1.1.4/32"]', { timeout: 10_000 });
      const routes = await page.$$eval('#routes tbody tr', (rows) => rows.map((row) => row.getAttribute('data-prefix')));
      assert.deepEqual(routes, ['10.1.1.3/32', '10.1.1.4/32']);
      await page.click('#vrfs tbody tr[data-vrf="vn2"]');
      await page.waitForSelector('#routes tbody td.empty', { timeout: 10_000 });
      await page.click('#vrfs tbody tr[data-vrf="vn1"]');
      await page.waitForSelector('#routes tbody tr[data-prefix="10.1.1.3/32"]', { timeout: 10_000 });

      // No control node: the table says so.
      assert.match((await page.textContent('#control-sessions tbody')) ?? '', /no control sessions/);

      // Traffic a1 -> a2 for 8 s: a flow appears, the chart follows.
      const samplesBefore = Number(await page.getAttribute('#vn-chart', 'data-samples'));
      const sender = new ProcessOutput(cluster.spawn('a1', [process.execPath, '-e', UDP_STREAM, String(FLOW.sport), A2.ip, String(FLOW.dport), '8']));
      const flowRow = `#flows tbody tr[data-src="${A1.ip}"][data-dst="${A2.ip}"][data-protocol="udp"]`;
      await page.waitForSelector(flowRow, { timeout: 10_000 });
      const cells = await page.$$eval(`${flowRow} td`, (tds) => tds.map((td) => td.textContent));
      assert.equal(cells[1], 'vn1');
      assert.equal(cells[3], `${A1.ip}:${FLOW.sport}`);
      assert.equal(cells[4], `${A2.ip}:${FLOW.dport}`);
      assert.equal(cells[5], 'forward');
      // The chart: new samples, and vn1's last one counts the ~50 pps in and out.
      await page.waitForFunction(
        (before) => {
          const canvas = document.querySelector('#vn-chart');
          const last = JSON.parse(canvas?.dataset.last ?? '{}') as Record<string, number>;
          return Number(canvas?.dataset.samples ?? 0) >= before + 3 && last.vn1 > 40;
        },
        samplesBefore,
        { timeout: 15_000 },
      );
      const during = JSON.parse((await page.getAttribute('#vn-chart', 'data-last')) ?? '{}') as Record<string, number>;
      assert.ok(during.vn1 > 40 && during.vn1 < 200, `vn1 pps ${during.vn1} while a1 sends 50 pps to a2`);
      assert.equal(during.vn2, 0);
      assert.match((await page.textContent('#vn-legend')) ?? '', /vn1 \d+ pps/);
      const rate = await page.$eval('#vn-traffic tbody tr[data-vn="vn1"] td:nth-child(8)', (cell) => Number(cell.textContent));
      assert.ok(rate > 20, `pps in shown for vn1: ${rate}`);
      // The flow filter narrows the table to the test's flow.
      await page.fill('#flow-filter input[name="port"]', String(FLOW.sport));
      await page.selectOption('#flow-filter select[name="protocol"]', 'udp');
      await page.waitForFunction(() => document.querySelector('#flow-count')?.textContent === '2 entries', undefined, { timeout: 10_000 });
      await sender.exited;
      // The traffic stopped: the chart goes back to 0.
      await page.waitForFunction(() => (JSON.parse(document.querySelector('#vn-chart')?.dataset.last ?? '{}') as Record<string, number>).vn1 === 0, undefined, { timeout: 10_000 });
      if (process.env.VROUTER_WEB_SCREENSHOT) await page.screenshot({ path: process.env.VROUTER_WEB_SCREENSHOT, fullPage: true });
      assert.deepEqual(pageErrors, []);
    }));
});
