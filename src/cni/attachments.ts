/**
 * One file per attachment (CNI_CONTAINERID, CNI_IFNAME) in the state
 * directory: what ADD made, so that DEL works without prevResult or netns and
 * GC knows every port. The Contrail CNI keeps the same record, its POST /vm
 * body, under config-dir/<vm-name>/<vmi-uuid> (contrail/vrouter.go addVmFile,
 * lines 270-294) and refuses a DEL whose container id differs from the one
 * recorded (CanDelete, lines 424-480): keying the file by container id does
 * the same, since a pod's later sandbox has the same host interface name.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VmAddRequest } from './agent-api-types';
import { CniResult } from './spec';

export interface AttachmentRecord {
  /** The network configuration's name: GC removes only its own network's attachments. */
  network: string;
  containerId: string;
  ifname: string;
  /** The POST /vm body sent to the agent. */
  port: VmAddRequest;
  /** True once POST /vm succeeded (a DEL or GC then sends DELETE /vm). */
  posted: boolean;
  result?: CniResult;
}

export class AttachmentStore {
  constructor(private readonly dir: string) {}

  private file(containerId: string, ifname: string): string {
    return path.join(this.dir, `${containerId}_${ifname}.json`);
  }

  get(containerId: string, ifname: string): AttachmentRecord | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.file(containerId, ifname), 'utf8')) as AttachmentRecord;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  /** Written to a temporary name and renamed, so a crash never leaves half a record. */
  put(record: AttachmentRecord): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = this.file(record.containerId, record.ifname);
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(record, null, 2));
    fs.renameSync(`${file}.tmp`, file);
  }

  remove(containerId: string, ifname: string): void {
    fs.rmSync(this.file(containerId, ifname), { force: true });
  }

  all(): AttachmentRecord[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return names
      .filter((name) => name.endsWith('.json'))
      .map((name) => JSON.parse(fs.readFileSync(path.join(this.dir, name), 'utf8')) as AttachmentRecord);
  }
}
