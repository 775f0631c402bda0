/** A request the port API refuses, with its HTTP status (vrouter-ts's own requests). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
