/**
 * vrouter-control's pod registration API: a pod registered there (labels,
 * VN, address) is configured on its vrouter through IF-MAP; refusals and
 * bad bodies are answered with the field; a delete there undoes the port on
 * its vrouter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Dataplane } from '../src/dataplane/dataplane';
import { parseMac } from '../src/dataplane/protocols/ethernet';
import { ipFromString } from '../src/dataplane/protocols/ipv4';
import { ControlClient } from '../src/control/agent/control-client';
import { InProcessDataplaneAccess } from '../src/control/agent/dataplane-access';
import { networkFqns } from '../src/control/ifmap/names';
import { runControlNode } from '../src/control/node/cli';
import type { Logger } from '../src/control/xmpp/logger';

const CONFIG = `
vns:
  - { name: default, subnet: 10.32.0.0/24 }
  - { name: db, subnet: 10.2.0.0/24, gateway: 10.2.0.254 }
services:
  - name: db
    clusterIP: 10.96.0.20
    ports: [{ protocol: TCP, port: 5432, targetPort: 15432 }]
    selector: { app: db }
vrouters: [node-a]
`;

const quiet: Logger = { info: () => undefined, warn: () => undefined };

async function call(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${base}${path}`, { method, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function eventually(check: () => void, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

test('a pod registered on the API is configured on its vrouter; refusals and bad bodies name the field; a delete undoes it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vrouter-pod-api-'));
  writeFileSync(join(dir, 'network.yaml'), CONFIG);
  const running = await runControlNode(['--config', join(dir, 'network.yaml'), '--listen', '127.0.0.1:0', '--api', '127.0.0.1:0'], quiet);
  const base = `http://127.0.0.1:${running.apiAddress!.port}`;
  const dataplane = new Dataplane({ name: 'node-a', underlayIp: ipFromString('192.168.0.11'), encapPriority: ['udp', 'gre'] });
  dataplane.addVif({ id: 0, kind: 'fabric', name: 'eth0', mac: parseMac('52:54:00:00:00:01'), ip: ipFromString('192.168.0.11'), vrf: -1, mtu: 1500 });
  const access = new InProcessDataplaneAccess(dataplane);
  const client = new ControlClient({
    nodeName: 'node-a', underlayIp: '192.168.0.11', encaps: ['udp'], servers: [{ host: '127.0.0.1', port: running.address.port }],
    reconnectDelay: { initial: 0.02, max: 0.2 }, access,
  });
  const registration = { vrouter: 'node-a', vmUuid: 'c1c1c1c1-1111-4222-8333-444455556666', vmiUuid: 'c0c0c0c0-1111-4222-8333-444455556666', name: 'db-1', namespace: 'prod', labels: { name: 'db', app: 'db' } };
  try {
    const registered = await call(base, 'POST', '/pods', registration);
    assert.equal(registered.status, 200, JSON.stringify(registered.body));
    assert.deepEqual(
      { vn: registered.body.vn, ip: registered.body.ip, gateway: registered.body.gateway, routingInstance: registered.body.routingInstance, floatingIps: registered.body.floatingIps },
      { vn: 'db', ip: '10.2.0.1', gateway: '10.2.0.254', routingInstance: networkFqns('db').routingInstance, floatingIps: [{ ip: '10.96.0.20', portMap: [{ protocol: 'tcp', port: 5432, targetPort: 15432 }] }] },
    );

    // The vrouter knows the port only by its VMI and VM, as the agent's port API gives them (no labels).
    const config = await client.addPort({ id: registration.vmiUuid, vmUuid: registration.vmUuid, name: 'db-1', namespace: 'default', labels: {}, mac: '02:00:00:00:00:20', label: 20 });
    assert.deepEqual({ vn: config.vn, vrf: config.vrf, ip: config.ip, floatingIps: config.floatingIps.map((fip) => fip.ip) }, {
      vn: networkFqns('db').vn, vrf: networkFqns('db').routingInstance, ip: '10.2.0.1', floatingIps: ['10.96.0.20'],
    });

    const refusals: Array<[unknown, number, RegExp]> = [
      [{ ...registration, vmUuid: 'other', vmiUuid: 'other-vmi', ip: '10.2.0.1' }, 409, /^field \/ip: address 10\.2\.0\.1 is already used by port node-a c0c0c0c0/],
      [{ ...registration, vmUuid: 'other', vmiUuid: 'other-vmi', ip: '10.2.0.254' }, 409, /^field \/ip: address 10\.2\.0\.254 is not a pod address/],
      [{ ...registration, vrouter: 'node-z' }, 400, /^field \/vrouter: node-z is not in the configuration's vrouters/],
      [{ ...registration, vmUuid: undefined }, 400, /^field \/vmUuid is required/],
      [{ ...registration, ip: '10.2.0.300' }, 400, /^field \/ip must match pattern/],
      [{ ...registration, color: 'red' }, 400, /^unknown field \/color/],
      [{ ...registration, labels: { name: 7 } }, 400, /^field \/labels\/name must be string/],
      ['{"vrouter":', 400, /^request body is not JSON/],
    ];
    for (const [body, status, reason] of refusals) {
      const answer = await call(base, 'POST', '/pods', body);
      assert.equal(answer.status, status, JSON.stringify(body));
      assert.match(String(answer.body.error), reason);
    }
    const list = await call(base, 'GET', '/pods');
    assert.deepEqual((list.body as unknown as Array<Record<string, unknown>>).map(({ vmiUuid, vn, ip, labels }) => ({ vmiUuid, vn, ip, labels })), [
      { vmiUuid: registration.vmiUuid, vn: 'db', ip: '10.2.0.1', labels: registration.labels },
    ], 'refused pods are not kept');

    assert.deepEqual(await call(base, 'DELETE', `/pods/${registration.vmUuid}`), { status: 200, body: {} });
    await eventually(() => assert.equal(access.vifOf(registration.vmiUuid), -1, 'the port is undone on its vrouter'));
    assert.equal((await call(base, 'DELETE', `/pods/${registration.vmUuid}`)).status, 404);
    assert.equal((await call(base, 'GET', '/nothing')).status, 404);
  } finally {
    await client.close();
    await running.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
