/**
 * The plain longest-prefix-match table: one Map per prefix length, and a
 * lookup that tries lengths 32 down to 0. Slow but obviously right, so the
 * tests use it as the oracle for the fast table (Dir1688Table).
 */
import { PrefixTable, prefixMask } from './prefix-table';

export class ReferencePrefixTable implements PrefixTable {
  /** routesByLength[length] maps the network address to its value. */
  private readonly routesByLength: Array<Map<number, number>> = Array.from({ length: 33 }, () => new Map());
  private routeCount = 0;

  get size(): number {
    return this.routeCount;
  }

  insert(prefix: number, length: number, value: number): number {
    checkLength(length);
    if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
      throw new RangeError(`route value must be an integer in [0, 2^31): ${value}`);
    }
    const routes = this.routesByLength[length];
    const network = (prefix & prefixMask(length)) >>> 0;
    const previous = routes.get(network);
    if (previous === undefined) this.routeCount++;
    routes.set(network, value);
    return previous ?? -1;
  }

  remove(prefix: number, length: number): boolean {
    checkLength(length);
    const removed = this.routesByLength[length].delete((prefix & prefixMask(length)) >>> 0);
    if (removed) this.routeCount--;
    return removed;
  }

  lookup(address: number): number {
    for (let length = 32; length >= 0; length--) {
      const value = this.routesByLength[length].get((address & prefixMask(length)) >>> 0);
      if (value !== undefined) return value;
    }
    return -1;
  }

  get(prefix: number, length: number): number {
    checkLength(length);
    return this.routesByLength[length].get((prefix & prefixMask(length)) >>> 0) ?? -1;
  }

  entries(): Array<{ prefix: number; length: number; value: number }> {
    const all: Array<{ prefix: number; length: number; value: number }> = [];
    this.routesByLength.forEach((routes, length) => {
      for (const [prefix, value] of routes) all.push({ prefix, length, value });
    });
    return all.sort((a, b) => a.prefix - b.prefix || a.length - b.length);
  }
}

function checkLength(length: number): void {
  if (!Number.isInteger(length) || length < 0 || length > 32) {
    throw new RangeError(`prefix length must be an integer in [0, 32]: ${length}`);
  }
}
