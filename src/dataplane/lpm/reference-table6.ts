/**
 * The plain IPv6 longest-prefix-match table: one Map per prefix length keyed
 * by the prefix as hex text, and a lookup that tries lengths 128 down to 0.
 * Slow but obviously right: the tests' oracle for HashedLengths6Table.
 */
import { maskPrefix6 } from '../protocols/ipv6';
import { PrefixTable6, checkLength6, checkValue, compareRoutes6 } from './prefix-table6';

function keyOf(bytes: Uint8Array, offset: number, length: number): string {
  const masked = maskPrefix6(Uint8Array.from(bytes.subarray(offset, offset + 16)), length);
  return Buffer.from(masked).toString('hex');
}

export class ReferencePrefixTable6 implements PrefixTable6 {
  private readonly routesByLength: Array<Map<string, number>> = Array.from({ length: 129 }, () => new Map());
  private routeCount = 0;

  get size(): number {
    return this.routeCount;
  }

  insert(prefix: Uint8Array, length: number, value: number): void {
    checkLength6(length);
    checkValue(value);
    const routes = this.routesByLength[length];
    const key = keyOf(prefix, 0, length);
    if (!routes.has(key)) this.routeCount++;
    routes.set(key, value);
  }

  remove(prefix: Uint8Array, length: number): boolean {
    checkLength6(length);
    const removed = this.routesByLength[length].delete(keyOf(prefix, 0, length));
    if (removed) this.routeCount--;
    return removed;
  }

  lookup(data: Uint8Array, offset: number): number {
    for (let length = 128; length >= 0; length--) {
      const value = this.routesByLength[length].get(keyOf(data, offset, length));
      if (value !== undefined) return value;
    }
    return -1;
  }

  get(prefix: Uint8Array, length: number): number {
    checkLength6(length);
    return this.routesByLength[length].get(keyOf(prefix, 0, length)) ?? -1;
  }

  entries(): Array<{ prefix: Uint8Array; length: number; value: number }> {
    const all: Array<{ prefix: Uint8Array; length: number; value: number }> = [];
    this.routesByLength.forEach((routes, length) => {
      for (const [key, value] of routes) all.push({ prefix: Uint8Array.from(Buffer.from(key, 'hex')), length, value });
    });
    return all.sort(compareRoutes6);
  }
}
