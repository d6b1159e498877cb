// Periodic work held to a share of the time. Each run is timed, and the next one waits until the
// work has taken at most `share` of the wall clock, never sooner than `minimum` milliseconds.
// Where the browser and the engine share a few CPU cores, each run takes longer and the page backs
// off by itself (the engine keeps its speed); on a machine with room to spare it runs at `minimum`.

export class Pacer {
  /**
   * @param {number} share the most of the wall clock the work may take (0 < share <= 1)
   * @param {number} minimum the shortest wait between two runs, in milliseconds
   */
  constructor(share, minimum) {
    this.share = share;
    this.minimum = minimum;
    this.cost = 0; // a running average of a run's milliseconds
    this.next = 0; // performance.now() before which the work waits
  }

  /** Milliseconds from one run's start to the next's. */
  get interval() {
    return Math.max(this.minimum, this.cost / this.share);
  }

  /** Whether the work may run now. */
  due() {
    return performance.now() >= this.next;
  }

  /** Time `work` (a promise-returning function) and schedule the next run from its start. */
  async run(work) {
    const started = performance.now();
    this.next = Number.POSITIVE_INFINITY; // one run at a time
    try {
      return await work();
    } finally {
      const spent = performance.now() - started;
      this.cost = this.cost === 0 ? spent : 0.7 * this.cost + 0.3 * spent;
      this.next = started + this.interval;
    }
  }

  /** Milliseconds until the work is due (0 when due now). */
  wait() {
    return Math.max(0, this.next - performance.now());
  }
}
