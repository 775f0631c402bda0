/**
 * The ports directory, laid out as the agent's (/var/lib/contrail/ports,
 * tungstenfabric/tf-controller @ 6a674397821187fedfffd9586942b906d3479dbc,
 * src/vnsw/agent/port_ipc/port_ipc_handler.cc):
 *
 *   <dir>/<vmi-uuid>                  a port (POST /port), MakeVmiUuidJson's form
 *   <dir>/vm/<vm-name>/<vmi-uuid>     a VM's interface (POST /vm), MakeVmVnPortJson's form
 *
 * so `vrouter run --ports-dir /var/lib/contrail/ports` reads what the agent,
 * vrouter-port-control (which writes the file itself, in Python's
 * json.dump form, before it posts) or the Contrail CNI left there, and the
 * agent could read what vrouter-ts writes. Files are written to a temporary
 * name and renamed, so a crash leaves the old file or the new one; names
 * that are not UUIDs are skipped on reload, as ReloadAllPorts does.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AgentJsonError, AgentPort, VmVnPort, WriteMeta, agentPortFile, normalizeUuid, readAgentPort, readVmVnPort, vmVnPortFile } from './agent-port';

/** A file that could not be read back, with why (the daemon logs it and goes on, as the agent does). */
export interface StoreProblem {
  file: string;
  error: string;
}

export class PortStore {
  private readonly vmDir: string;

  /** Creates the directory (and its vm/) when missing; throws naming it when that fails. */
  constructor(
    readonly dir: string,
    private readonly meta: () => WriteMeta,
  ) {
    this.vmDir = path.join(dir, 'vm');
    try {
      fs.mkdirSync(this.vmDir, { recursive: true });
    } catch (error) {
      throw new Error(`ports directory ${dir}: ${(error as Error).message}`);
    }
  }

  savePort(port: AgentPort): void {
    writeAtomically(path.join(this.dir, port.id), agentPortFile(port, this.meta()));
  }

  removePort(id: string): void {
    fs.rmSync(path.join(this.dir, id), { force: true });
  }

  saveVmVnPort(port: VmVnPort): void {
    const dir = path.join(this.vmDir, safeName(port.vmName));
    fs.mkdirSync(dir, { recursive: true });
    writeAtomically(path.join(dir, port.vmiUuid), vmVnPortFile(port, this.meta()));
  }

  /** DeleteVmVnPort: the VM's files and its directory. */
  removeVmVnPorts(ports: VmVnPort[]): void {
    for (const port of ports) {
      const dir = path.join(this.vmDir, safeName(port.vmName));
      fs.rmSync(path.join(dir, port.vmiUuid), { force: true });
      if (fs.existsSync(dir) && fs.readdirSync(dir).length === 0) fs.rmdirSync(dir);
    }
  }

  /** ReloadAllPorts: every port and VM interface file, with the files that did not read. */
  load(): { ports: AgentPort[]; vmVnPorts: VmVnPort[]; problems: StoreProblem[] } {
    const problems: StoreProblem[] = [];
    const read = <T>(file: string, parse: (text: string) => T): T[] => {
      try {
        return [parse(fs.readFileSync(file, 'utf8'))];
      } catch (error) {
        problems.push({ file, error: error instanceof AgentJsonError || error instanceof Error ? error.message : String(error) });
        return [];
      }
    };
    const ports = uuidFiles(this.dir).flatMap((file) => read(file, (text) => readAgentPort(JSON.parse(text) as unknown)));
    const vmVnPorts = fs
      .readdirSync(this.vmDir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .flatMap((entry) => uuidFiles(path.join(this.vmDir, entry.name)).flatMap((file) => read(file, readVmVnPort)));
    return { ports, vmVnPorts, problems };
  }
}

function uuidFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isFile() && normalizeUuid(entry.name) !== undefined)
    .map((entry) => path.join(dir, entry.name))
    .sort();
}

/** A VM name as one path component (the CNI's names, "<cluster>__<namespace>__<pod>", pass unchanged). */
function safeName(name: string): string {
  const safe = name.replace(/[/\0]/g, '_');
  return safe === '' || safe === '.' || safe === '..' ? `_${safe}` : safe;
}

function writeAtomically(file: string, text: string): void {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const fd = fs.openSync(temporary, 'w', 0o644);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temporary, file);
}
