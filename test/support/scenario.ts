/**
 * A node programmed through the Dataplane API for pipeline tests:
 *
 *   node1 (underlay 192.168.0.11, fabric vif 0)
 *   vrf 1 "vn1" 10.1.1.0/24, gateway 10.1.1.1
 *     vif 1 pod-a 10.1.1.3   nh 1 encap   label 17
 *     vif 2 pod-b 10.1.1.4   nh 2 encap   label 18
 *     10.1.1.5/32 -> nh 10 tunnel 192.168.0.12 label 25 udp
 *     10.1.1.6/32 -> nh 11 tunnel 192.168.0.13 label 26 gre
 *     10.96.0.10/32 -> nh 20 composite [10, 11, 12]   (nh 12: 192.168.0.14 label 27 udp)
 *   vrf 2 "vn2" 10.2.2.0/24: vif 3 pod-c 10.2.2.3, nh 3, label 19
 */
import { Dataplane } from '../../src/dataplane/dataplane';
import { MemoryPort } from '../../src/dataplane/io/memory-port';
import { PacketPool } from '../../src/dataplane/packet-pool';
import { Pipeline } from '../../src/dataplane/pipeline';
import { ipFromString } from '../../src/dataplane/protocols/ipv4';
import { parseMac } from '../../src/dataplane/protocols/ethernet';

export const FABRIC_MAC = '52:54:00:00:00:11';
export const UNDERLAY_GW_MAC = '52:54:00:00:00:fe';
export const POD_A_MAC = '02:00:0a:01:01:03';
export const POD_B_MAC = '02:00:0a:01:01:04';
export const POD_C_MAC = '02:00:0a:02:02:03';
export const VROUTER_MAC = '00:00:5e:00:01:00';

export interface Scenario {
  dp: Dataplane;
  pool: PacketPool;
  pipeline: Pipeline;
  ports: MemoryPort[];
  /** Runs frames through the pipeline as one batch, each from its vif. */
  run(frames: Array<[vif: number, frame: Buffer]>): void;
  /** Frames sent on a vif so far. */
  out(vif: number): Buffer[];
}

export function buildScenario(options: { flowCapacity?: number; vifFlowLimit?: number } = {}): Scenario {
  const dp = new Dataplane(
    { name: 'node1', underlayIp: ipFromString('192.168.0.11'), encapPriority: ['udp', 'gre'] },
    { flowCapacity: options.flowCapacity ?? 8192, vifFlowLimit: options.vifFlowLimit },
  );
  dp.addVrf(1, 'vn1', [{ prefix: ipFromString('10.1.1.0'), length: 24 }], ipFromString('10.1.1.1'));
  dp.addVrf(2, 'vn2', [{ prefix: ipFromString('10.2.2.0'), length: 24 }], ipFromString('10.2.2.1'));
  dp.addVif({ id: 0, kind: 'fabric', name: 'eth0', mac: parseMac(FABRIC_MAC), ip: ipFromString('192.168.0.11'), vrf: -1, mtu: 1500 });
  dp.addVif({ id: 1, kind: 'virtual', name: 'pod-a', mac: parseMac(POD_A_MAC), ip: ipFromString('10.1.1.3'), vrf: 1, mtu: 1500 });
  dp.addVif({ id: 2, kind: 'virtual', name: 'pod-b', mac: parseMac(POD_B_MAC), ip: ipFromString('10.1.1.4'), vrf: 1, mtu: 1500 });
  dp.addVif({ id: 3, kind: 'virtual', name: 'pod-c', mac: parseMac(POD_C_MAC), ip: ipFromString('10.2.2.3'), vrf: 2, mtu: 1500 });
  dp.setNexthop(1, { kind: 'encap', vif: 1, mac: parseMac(POD_A_MAC) });
  dp.setNexthop(2, { kind: 'encap', vif: 2, mac: parseMac(POD_B_MAC) });
  dp.setNexthop(3, { kind: 'encap', vif: 3, mac: parseMac(POD_C_MAC) });
  const tunnel = (dip: string, label: number, encap: 'udp' | 'gre') => ({
    kind: 'tunnel' as const,
    vif: 0,
    dip: ipFromString(dip),
    sip: ipFromString('192.168.0.11'),
    label,
    encap,
    mac: parseMac(UNDERLAY_GW_MAC),
  });
  dp.setNexthop(10, tunnel('192.168.0.12', 25, 'udp'));
  dp.setNexthop(11, tunnel('192.168.0.13', 26, 'gre'));
  dp.setNexthop(12, tunnel('192.168.0.14', 27, 'udp'));
  dp.setNexthop(20, { kind: 'composite', members: [10, 11, 12] });
  dp.addRoute(1, ipFromString('10.1.1.3'), 32, 1);
  dp.addRoute(1, ipFromString('10.1.1.4'), 32, 2);
  dp.addRoute(1, ipFromString('10.1.1.5'), 32, 10);
  dp.addRoute(1, ipFromString('10.1.1.6'), 32, 11);
  dp.addRoute(1, ipFromString('10.96.0.10'), 32, 20);
  dp.addRoute(2, ipFromString('10.2.2.3'), 32, 3);
  dp.setLabel(17, 1);
  dp.setLabel(18, 2);
  dp.setLabel(19, 3);

  const pool = new PacketPool(256);
  const pipeline = new Pipeline(dp, pool);
  const ports = [0, 1, 2, 3].map((id) => {
    const port = new MemoryPort();
    dp.vifs.get(id)!.port = port;
    return port;
  });
  const slots = new Int32Array(pool.slots);
  return {
    dp,
    pool,
    pipeline,
    ports,
    run(frames) {
      frames.forEach(([vif, frame], i) => {
        const slot = pool.alloc();
        pool.write(slot, frame);
        pool.ingressVif[slot] = vif;
        slots[i] = slot;
      });
      pipeline.processBatch(slots, frames.length);
      for (let i = 0; i < frames.length; i++) pool.free(slots[i]);
    },
    out(vif) {
      return ports[vif].frames;
    },
  };
}
