/**
 * `vrouter replay --expect` and `vrouter test` judge outputs as a CI job
 * would: the fixtures' real outputs compared with copies changed on
 * purpose, each difference worded as a person reads it (vif, packet index
 * and time, decoded field, first differing bytes), masks, --update, exit
 * codes 0/1/2, scenario.yaml assertions, and the JUnit report validated
 * with xmllint against the JUnit schema Jenkins' xUnit plugin uses
 * (test/replay-data/junit-10.xsd, vendored from jenkinsci/xunit-plugin).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PcapWriter, readCapture } from '../src/dataplane/io/pcap';
import { checksum } from '../src/dataplane/protocols/checksum';
import { comparePackets, parseMasks } from '../src/replay/compare';
import { FIXTURES_DIR, REPO_ROOT, vrouter } from './support/fixtures';

const JUNIT_XSD = path.join(REPO_ROOT, 'test', 'replay-data', 'junit-10.xsd');
let dir = '';

/** A copy of a fixture to change. */
function copyFixture(name: string, as = name): string {
  const to = path.join(dir, as);
  fs.cpSync(path.join(FIXTURES_DIR, name), to, { recursive: true });
  return to;
}

/** Rewrites a pcap (microsecond, as the fixtures are) with `change` applied to its frames. */
function rewritePcap(file: string, change: (frames: Buffer[]) => Buffer[]): void {
  const frames = readCapture(file);
  const changed = change(frames.map((frame) => Buffer.from(frame.data)));
  const writer = new PcapWriter(file, { nanosecond: false });
  changed.forEach((data, i) => writer.write(frames[Math.min(i, frames.length - 1)].timestampNs, data, 0, data.length));
  writer.close();
}

function replayExpect(fixture: string, args: string[]) {
  const inputs = fs.readdirSync(path.join(fixture, 'in')).flatMap((file) => ['--in', `${file.replace(/\.pcap$/, '')}=${path.join(fixture, 'in', file)}`]);
  return vrouter(['replay', '--state', path.join(fixture, 'state.yaml'), ...inputs, '--expect', path.join(fixture, 'expected'), ...args]);
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'replay-compare-'));
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('vrouter replay --expect', () => {
  it('exits 0 and says so when every output equals the expected one', () => {
    const run = replayExpect(path.join(FIXTURES_DIR, '02-encap-to-remote-pod'), []);
    assert.equal(run.status, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /^equal to .*02-encap-to-remote-pod\/expected$/m);
  });

  it('names the vif, the packet, its time and the decoded field, with the first differing bytes; masks and layers', () => {
    const fixture = copyFixture('02-encap-to-remote-pod');
    const expectedPcap = path.join(fixture, 'expected', 'eth0.pcap');
    const original = readCapture(expectedPcap);
    // Packet 3: MPLS over UDP; the outer UDP source port (after 14 + 20 bytes) becomes 49400.
    rewritePcap(expectedPcap, (frames) => {
      frames[2].writeUInt16BE(49400, 34);
      return frames;
    });
    const actualPort = original[2].data.readUInt16BE(34);
    const time = `${original[2].timestampNs / 1_000_000_000n}.${String(original[2].timestampNs % 1_000_000_000n).padStart(9, '0')}`;
    const run = replayExpect(fixture, []);
    assert.equal(run.status, 1, run.stdout + run.stderr);
    const line = run.stdout.split('\n').find((text) => text.startsWith('packet 3 on eth0'));
    assert.ok(line, run.stdout);
    assert.equal(
      line,
      `packet 3 on eth0 (${time}): outer UDP source port ${actualPort}, expected 49400; first difference at byte 34 (0x22): ` +
        `${original[2].data.toString('hex', 34, 50).replace(/(..)(?!$)/g, '$1 ')}, expected c0 f8 ${original[2].data.toString('hex', 36, 50).replace(/(..)(?!$)/g, '$1 ')}`,
    );
    assert.match(run.stdout, /^1 differences from /m);
    assert.equal(replayExpect(fixture, ['--ignore', 'udp.srcport']).status, 0);
    assert.equal(replayExpect(fixture, ['--ignore', 'outer.udp.srcport']).status, 0);
    assert.equal(replayExpect(fixture, ['--ignore', 'inner.udp.srcport']).status, 1, 'the inner layer is not the outer one');
  });

  it('counts packets per vif, and compares summary.json counters and flows.json by flow', () => {
    const fixture = copyFixture('01-local-pod-to-pod');
    rewritePcap(path.join(fixture, 'expected', 'pod-b.pcap'), (frames) => [...frames, frames[0]]);
    const summaryFile = path.join(fixture, 'expected', 'summary.json');
    const summary = JSON.parse(fs.readFileSync(summaryFile, 'utf8'));
    summary.drops['no-route'] = 1;
    fs.writeFileSync(summaryFile, JSON.stringify(summary));
    const flowsFile = path.join(fixture, 'expected', 'flows.json');
    const flows = JSON.parse(fs.readFileSync(flowsFile, 'utf8'));
    const first = flows.pairs[0].forward;
    flows.pairs[0].forward.packets += 2;
    fs.writeFileSync(flowsFile, JSON.stringify(flows));
    const podB = readCapture(path.join(FIXTURES_DIR, '01-local-pod-to-pod', 'expected', 'pod-b.pcap')).length;

    const run = replayExpect(fixture, []);
    assert.equal(run.status, 1);
    const lines = run.stdout.split('\n');
    assert.ok(lines.includes(`vif pod-b: ${podB} packets, expected ${podB + 1}`), run.stdout);
    assert.ok(lines.includes('drops.no-route: 0, expected 1'), run.stdout);
    assert.ok(lines.includes(`flow ${first.protocol} ${first.src}:${first.srcPort} > ${first.dst}:${first.dstPort} vrf ${first.vrf}: packets: ${first.packets - 2}, expected ${first.packets}`.replace(': packets', ': forward.packets')), run.stdout);
  });

  it('--update rewrites the expected directory, which then compares equal', () => {
    const fixture = copyFixture('01-local-pod-to-pod', '01-update');
    fs.rmSync(path.join(fixture, 'expected'), { recursive: true });
    const update = replayExpect(fixture, ['--update']);
    assert.equal(update.status, 0, update.stderr);
    for (const file of fs.readdirSync(path.join(FIXTURES_DIR, '01-local-pod-to-pod', 'expected'))) {
      assert.ok(fs.readFileSync(path.join(fixture, 'expected', file)).equals(fs.readFileSync(path.join(FIXTURES_DIR, '01-local-pod-to-pod', 'expected', file))), file);
    }
    assert.equal(replayExpect(fixture, []).status, 0);
  });

  it('exits 2 on usage and input errors, naming what is wrong', () => {
    const fixture = path.join(FIXTURES_DIR, '01-local-pod-to-pod');
    const unknownMask = replayExpect(fixture, ['--ignore', 'udp.sport']);
    assert.equal(unknownMask.status, 2);
    assert.match(unknownMask.stderr, /--ignore: unknown field "udp.sport" \(udp fields: udp.srcport, udp.dstport, udp.length, udp.checksum\)/);
    const missing = vrouter(['replay', '--state', path.join(fixture, 'state.yaml'), '--in', `pod-a=${path.join(dir, 'nothing.pcap')}`, '--expect', path.join(fixture, 'expected')]);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /nothing\.pcap/);
    const notCapture = path.join(dir, 'text.pcap');
    fs.writeFileSync(notCapture, 'not a capture\n');
    const broken = vrouter(['replay', '--state', path.join(fixture, 'state.yaml'), '--in', `pod-a=${notCapture}`, '--out', path.join(dir, 'out-broken')]);
    assert.equal(broken.status, 2);
    assert.match(broken.stderr, /text\.pcap: unknown magic number/);
    assert.equal(vrouter(['replay', '--state', path.join(fixture, 'state.yaml')]).status, 2);
    assert.equal(vrouter(['replay', '--bogus']).status, 2);
  });
});

describe('comparePackets', () => {
  const frame = (): Buffer => {
    // Ethernet + IPv4 (id 0x1234) + UDP 1000 -> 2000, 4 bytes of payload, both checksums right.
    const data = Buffer.alloc(14 + 20 + 8 + 4);
    data.writeUInt16BE(0x0800, 12);
    data.set([0x45, 0, 0, 32, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 10, 1, 1, 3, 10, 1, 1, 4], 14);
    data.writeUInt16BE(checksum(data, 14, 20), 24);
    data.writeUInt16BE(1000, 34);
    data.writeUInt16BE(2000, 36);
    data.writeUInt16BE(12, 38);
    data.write('abcd', 42);
    return data;
  };
  const withId = (id: number, fixChecksum: boolean): Buffer => {
    const data = frame();
    data.writeUInt16BE(id, 18);
    if (fixChecksum) {
      data.writeUInt16BE(0, 24);
      data.writeUInt16BE(checksum(data, 14, 20), 24);
    }
    return data;
  };

  it('a masked checksum is not compared but must still be right', () => {
    const masks = parseMasks(['ip.id,ip.checksum']);
    assert.deepEqual(comparePackets(withId(0x9999, true), frame(), masks), []);
    const wrong = comparePackets(withId(0x9999, false), frame(), masks);
    assert.equal(wrong.length, 1);
    assert.match(wrong[0], /^IPv4 header checksum 0x[0-9a-f]{4} is wrong \(masked, but a checksum must still be valid\)$/);
  });

  it('unmasked, the fields and the payload are named', () => {
    const problems = comparePackets(withId(0x9999, true), frame(), parseMasks([]));
    assert.equal(problems[0], 'IPv4 identification 0x9999, expected 0x1234');
    assert.match(problems[1], /^IPv4 header checksum 0x[0-9a-f]{4}, expected 0x[0-9a-f]{4}$/);
    const payload = frame();
    payload.write('abXd', 42);
    assert.deepEqual(comparePackets(payload, frame(), parseMasks([])), ['payload differs at byte 2 of it', 'first difference at byte 44 (0x2c): 58 64, expected 63 64']);
  });
});

describe('vrouter test', () => {
  let suite = '';

  before(() => {
    suite = path.join(dir, 'suite');
    fs.mkdirSync(suite);
    // 1: a fixture as it is.
    fs.cpSync(path.join(FIXTURES_DIR, '01-local-pod-to-pod'), path.join(suite, 'a-plain'), { recursive: true });
    // 2: scenario.yaml naming inputs, counters, per-vif packets and flow assertions, without expected/.
    const described = path.join(suite, 'b-described');
    fs.mkdirSync(path.join(described, 'captures'), { recursive: true });
    fs.copyFileSync(path.join(FIXTURES_DIR, '14-clusterip-udp-port-translation', 'state.yaml'), path.join(described, 'node.yaml'));
    for (const vif of ['pod-a', 'dns-1']) fs.copyFileSync(path.join(FIXTURES_DIR, '14-clusterip-udp-port-translation', 'in', `${vif}.pcap`), path.join(described, 'captures', `from-${vif}.pcap`));
    fs.writeFileSync(
      path.join(described, 'scenario.yaml'),
      `state: node.yaml
inputs:
  - { file: captures/from-pod-a.pcap, vif: pod-a }
  - { file: captures/from-dns-1.pcap, vif: dns-1 }
counters: { packets.received: 7, drops.no-route: 1, drops.flow-action-drop: 1, drops.ttl-expired: 0 }
packets: { pod-a: 2, dns-1: 3 }
expect:
  - flows: 3
  - evictions: 0
  - flow: { protocol: udp, dst: 10.96.0.10, dstPort: 53 }
    count: 2
    forward: { action: nat, nat: [dnat, dpat] }
    reverse: { src: 10.1.2.6, srcPort: 5353 }
  - flow: { protocol: udp, dstPort: 54 }
    forward: { action: drop }
  - flow: { protocol: tcp }
    count: 0
`,
    );
    // 3: a failing one: wrong counters and flows asked for.
    fs.cpSync(described, path.join(suite, 'c-failing'), { recursive: true });
    const failing = fs.readFileSync(path.join(suite, 'c-failing', 'scenario.yaml'), 'utf8').replace('drops.no-route: 1', 'drops.no-route: 2').replace('dns-1: 3', 'dns-1: 4 & <5>').replace('count: 0', 'count: 1');
    fs.writeFileSync(path.join(suite, 'c-failing', 'scenario.yaml'), failing.replace('dns-1: 4 & <5>', 'dns-1: 4'));
    // 4: one that cannot run: a state file with an error.
    fs.cpSync(path.join(FIXTURES_DIR, '01-local-pod-to-pod'), path.join(suite, 'd-broken'), { recursive: true });
    fs.appendFileSync(path.join(suite, 'd-broken', 'state.yaml'), '  - { vrf: 1, prefix: 10.1.1.9/32, nexthop: 99 }\n'.replace('  -', 'bogus:\n  -'));
  });

  it('prints one line per scenario, its failures, and N passed, N failed; JUnit valid against the schema; JSON', () => {
    const junit = path.join(dir, 'junit.xml');
    const json = path.join(dir, 'report.json');
    const run = vrouter(['test', suite, '--junit', junit, '--json', json, '--jobs', '2']);
    assert.equal(run.status, 1, run.stdout + run.stderr);
    const lines = run.stdout.split('\n');
    assert.match(lines[0], /^ok {3}\S+\/a-plain \(\d+\.\d\d s\)$/);
    assert.match(lines[1], /^ok {3}\S+\/b-described \(\d+\.\d\d s\)$/);
    assert.match(lines[2], /^FAIL \S+\/c-failing \(\d+\.\d\d s\)$/);
    assert.ok(lines.includes('     drops.no-route: 1, expected 2'), run.stdout);
    assert.ok(lines.includes('     vif dns-1: 3 packets, expected 4'), run.stdout);
    assert.ok(lines.some((line) => /^ {5}expect\[4\]: 0 flow pairs match \{"protocol":"tcp"\}, expected 1$/.test(line)), run.stdout);
    assert.ok(lines.some((line) => /^ERR  \S+\/d-broken/.test(line)), run.stdout);
    assert.ok(lines.some((line) => /state\.yaml: \/bogus: unknown field/.test(line)), run.stdout);
    assert.equal(lines.at(-2), '2 passed, 2 failed');

    const validation = spawnSync('xmllint', ['--noout', '--schema', JUNIT_XSD, junit], { encoding: 'utf8' });
    assert.equal(validation.status, 0, validation.stderr);
    const xml = fs.readFileSync(junit, 'utf8');
    assert.match(xml, /<testsuites name="vrouter test" tests="4" failures="1" errors="1"/);
    assert.match(xml, /<testcase name="a-plain" classname="suite"[^>]*\/>/);
    assert.match(xml, /<testcase name="c-failing"[^>]*>\n\s*<failure type="ReplayMismatch" message="drops.no-route: 1, expected 2">[^<]*vif dns-1: 3 packets, expected 4/);
    assert.match(xml, /<testcase name="d-broken"[^>]*>\n\s*<error type="ScenarioError"/);
    // The same file read by an independent parser: xmllint's XPath.
    assert.equal(execFileSync('xmllint', ['--xpath', 'count(//testcase)', junit], { encoding: 'utf8' }).trim(), '4');

    const report = JSON.parse(fs.readFileSync(json, 'utf8'));
    assert.equal(report.passed, 2);
    assert.equal(report.failed, 2);
    assert.deepEqual(report.scenarios.map((scenario: { name: string; status: string }) => [scenario.name, scenario.status]), [
      ['a-plain', 'passed'],
      ['b-described', 'passed'],
      ['c-failing', 'failed'],
      ['d-broken', 'error'],
    ]);
  });

  it('exits 0 when all pass, 2 when a directory holds no scenario', () => {
    assert.equal(vrouter(['test', path.join(suite, 'a-plain'), path.join(suite, 'b-described')]).status, 0);
    const none = vrouter(['test', dir + '/nowhere']);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /nowhere: no such directory/);
  });
});
