/**
 * The port of an interface in the worker's namespace (a pod veth's host
 * end): AF_XDP where the kernel allows it, AF_PACKET where it refuses
 * (no XDP on the device, bpf(2) denied, VROUTER_AF_XDP=off), and the reason
 * for the fallback, which `vrouter vif` shows.
 */
import type { NativeIo } from './native';
import { PacketRingPort } from './packet-ring-port';
import { XskPort } from './xsk-port';

export type InterfacePort = XskPort | PacketRingPort;

export function openInterfacePort(io: NativeIo, device: string): { port: InterfacePort; fallback?: string } {
  try {
    return { port: new XskPort(io, device) };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    try {
      return { port: new PacketRingPort(io, device), fallback: `AF_XDP refused: ${reason}` };
    } catch (fallbackError) {
      const why = fallbackError instanceof Error ? fallbackError.message : String(fallbackError);
      throw new Error(`${device}: AF_XDP refused (${reason}), AF_PACKET too (${why})`, { cause: fallbackError });
    }
  }
}
