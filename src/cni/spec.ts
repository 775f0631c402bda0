/**
 * The CNI protocol as containernetworking/cni SPEC.md defines it, versions
 * 1.1.0 (tag spec-v1.1.0, commit df52e9460d3a819920b63e28c4d5d6f12bed6758) and
 * 1.0.0 (tag v1.0.0 = spec-v1.0.0, commit 5608690f77380743f29bb314458da9a9fb88c003):
 * the versions spoken, the well-known error codes (Section 5 "Error") and the
 * result objects (Section 5 "ADD Success" / "Success", "VERSION Success").
 */

export const SUPPORTED_VERSIONS = ['1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

export function isSupportedVersion(version: unknown): version is CniVersion {
  return typeof version === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(version);
}

/** SPEC.md Section 5, "Error": codes 0-99 are reserved, 100+ are the plugin's. */
export const ErrorCode = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodingFailure: 6,
  invalidNetworkConfig: 7,
  tryAgainLater: 11,
  /** STATUS (spec 1.1.0 Section 2): the plugin cannot service ADD requests. */
  pluginNotAvailable: 50,
  /** Plugin-specific: the agent answered a request with an error. */
  agentError: 100,
  /** Plugin-specific: CHECK found the attachment not as its prevResult says. */
  attachmentMismatch: 101,
  /** Plugin-specific: a link or address could not be set up. */
  interfaceSetupFailed: 102,
} as const;

export class CniError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly details = '',
  ) {
    super(message);
  }
}

export interface CniInterface {
  name: string;
  mac?: string;
  /** 1.1.0 only. */
  mtu?: number;
  /** CNI_NETNS for interfaces in the container; absent for host interfaces. */
  sandbox?: string;
}

export interface CniIpConfig {
  address: string;
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  /** 1.1.0 only (as are advmss, priority, table, scope, which this plugin does not set). */
  mtu?: number;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: CniRoute[];
  dns?: CniDns;
}

export interface CniErrorResult {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export function errorResult(version: string, error: CniError): CniErrorResult {
  const result: CniErrorResult = { cniVersion: version, code: error.code, msg: error.message };
  if (error.details !== '') result.details = error.details;
  return result;
}

/** A result in the shape of `version`: 1.0.0 has no interface or route `mtu`. */
export function resultForVersion(result: CniResult, version: CniVersion): CniResult {
  if (version === '1.1.0') return { ...result, cniVersion: version };
  return {
    ...result,
    cniVersion: version,
    interfaces: result.interfaces?.map(({ mtu: _mtu, ...rest }) => rest),
    routes: result.routes?.map(({ mtu: _mtu, ...rest }) => rest),
  };
}
