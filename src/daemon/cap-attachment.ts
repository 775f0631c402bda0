/**
 * Attaching an existing interface (the host side of a pod's veth, as the
 * OpenContrail kubelet plugin did) through libpcap, with the `cap` package.
 * cap delivers frames through callbacks on this (main) thread's event loop,
 * so frames cross to the dataplane worker through shared rings: captured
 * frames go into `rx` and wake the worker; frames the worker sends to this
 * vif come out of `tx` and are injected with pcap. The capture filter is
 * `inbound`, so injected frames are not captured back.
 */
import * as fs from 'node:fs';
import { Cap } from 'cap';
import { SharedRing } from '../dataplane/io/shared-ring';
import { ATTACH_RECORD_SIZE, ATTACH_RING_RECORDS } from './worker';

const CAPTURE_BUFFER_BYTES = 4 * 1024 * 1024;

export class CapAttachment {
  readonly rx = new SharedRing(ATTACH_RING_RECORDS, ATTACH_RECORD_SIZE);
  readonly tx = new SharedRing(ATTACH_RING_RECORDS, ATTACH_RECORD_SIZE);
  private readonly cap = new Cap();
  private readonly frame = Buffer.alloc(65535);
  private open = true;

  /** Starts capturing `device`; `wake` tells the worker frames are waiting. */
  constructor(
    readonly device: string,
    wake: () => void,
  ) {
    if (!fs.existsSync(`/sys/class/net/${device}`)) throw new Error(`no interface ${device} in this network namespace`);
    this.cap.open(device, 'inbound', CAPTURE_BUFFER_BYTES, this.frame);
    this.cap.setMinBytes?.(0);
    this.cap.on('packet', (bytes: number) => {
      const at = this.rx.reserve(bytes);
      if (at < 0) return;
      this.rx.data.set(this.frame.subarray(0, bytes), at);
      this.rx.commit();
      wake();
    });
    void this.pumpTransmit();
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    this.cap.close();
    this.tx.notify();
  }

  /** Injects what the worker transmits to this vif, as it arrives. */
  private async pumpTransmit(): Promise<void> {
    while (this.open) {
      await this.tx.waitForRecords(1000);
      if (!this.open) return;
      this.tx.drain((record) => this.cap.send(Buffer.from(record.buffer, record.byteOffset, record.byteLength), record.byteLength));
    }
  }
}
