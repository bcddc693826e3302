// The contract of async operations and the event log, shared by the services that start slow work (VM
// actions, image imports) and publish events, and by the API routes that expose them.

export type OperationStatus = 'running' | 'succeeded' | 'failed' | 'cancelled';

/** Given to the work function: report progress, and stop early when the signal aborts (cancel). */
export interface OperationContext {
  signal: AbortSignal;
  /** percent 0..100 (clamped, never goes back); message is a short human line ("copying 40 of 512 MiB"). */
  progress(percent: number, message?: string): void;
}

export interface OperationView {
  id: string;
  /** e.g. 'vm.start', 'image.import'. */
  kind: string;
  /** What it works on, e.g. 'vms/web1', 'images/debian-12'. */
  target: string;
  status: OperationStatus;
  progress: { percent: number; message?: string };
  createdAt: string;
  updatedAt: string;
  /** Set when succeeded: what the synchronous call would have answered (e.g. the Vm view). */
  result?: unknown;
  /** Set when failed or cancelled: the stable code, message and HTTP status the error maps to (and the
   *  validation issues, as in a problem's `errors`). */
  error?: { code: string; message: string; status: number; errors?: Array<{ pointer: string; reason: string }> };
  /** True once a cancel was asked for; the work may still finish (then it stays succeeded). */
  cancelRequested?: boolean;
}

export interface Operations {
  /** Starts the work now and returns its running view at once; errors become the operation's error. */
  run<T>(kind: string, target: string, work: (ctx: OperationContext) => Promise<T>): OperationView;
  /** Throws AppError OPERATION_NOT_FOUND for unknown or expired ids. */
  get(id: string): OperationView;
  list(): OperationView[];
  /** Resolves with the view once the operation ends or after timeoutMs, whichever is first (or at once when
   *  `signal` aborts, e.g. the waiting client went away). */
  wait(id: string, timeoutMs: number, signal?: AbortSignal): Promise<OperationView>;
  /** Aborts the work's signal; the operation ends as cancelled when the work returns. */
  cancel(id: string): OperationView;
}

export interface EventInput {
  /** Dotted, e.g. 'vm.started', 'vm.stopped', 'network.applied', 'dhcp.ack', 'operation.succeeded'. */
  type: string;
  /** What it is about, e.g. 'vms/web1', 'networks/lan', 'operations/<id>'. */
  subject: string;
  data?: Record<string, unknown>;
}

/** What services depend on to publish; the event log implements it. */
export interface EventSink {
  publish(e: EventInput): void;
}
