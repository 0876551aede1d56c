/**
 * The revocation feed's position in the outbox: pure bookkeeping, no I/O, so it can be tested alone.
 *
 * `floor` is the highest id such that every id at or below it has been applied (or was never committed). Ids are
 * taken at insert but become visible at commit, so they can arrive out of order; an id below the newest seen that is
 * not readable yet is a hole, waited for `holeGraceMs` from when it was first seen, then skipped.
 *
 * `T` is whatever the feed keeps with a queued id until it is applied.
 */
export function createOutboxPosition<T>(options: { holeGraceMs: number }, now: () => number) {
  let floor: number | undefined
  let maxSeen = 0
  const done = new Set<number>()
  const queued = new Map<number, T>()
  const holes = new Map<number, number>()

  function seen(id: number): boolean {
    return (floor !== undefined && id <= floor) || done.has(id) || queued.has(id)
  }

  return {
    /** Undefined until `start`. */
    get floor(): number | undefined {
      return floor
    },
    /** Ids queued and not yet applied. */
    get pending(): number {
      return queued.size
    },
    /** Ids kept above the floor (applied out of order, holes being waited for): what a gap must not leave behind. */
    get held(): { done: number; holes: number } {
      return { done: done.size, holes: holes.size }
    },
    seen,
    /** Queues an id not seen before; false (and nothing queued) when it was. */
    enqueue(id: number, item: T): boolean {
      if (seen(id)) return false
      queued.set(id, item)
      if (id > maxSeen) maxSeen = id
      holes.delete(id)
      return true
    },
    /** The queue in id arrival order; live: ids queued while it is being walked are walked too. */
    queued(): MapIterator<[number, T]> {
      return queued.entries()
    },
    applied(id: number): void {
      queued.delete(id)
      done.add(id)
    },
    /**
     * Start: replay every row after the last one written before the replay window, but never below what was pruned
     * (those rows are gone).
     */
    start(lastIdBeforeWindow: number, prunedThrough: number): void {
      floor = Math.max(lastIdBeforeWindow, prunedThrough)
      maxSeen = Math.max(maxSeen, floor)
    },
    /** Rows up to `prunedThrough` were pruned before they were applied: jump over them and forget their ids. */
    jumpTo(prunedThrough: number): void {
      floor = prunedThrough
      maxSeen = Math.max(maxSeen, floor)
      for (const id of done) if (id <= floor) done.delete(id)
      for (const id of holes.keys()) if (id <= floor) holes.delete(id)
    },
    /** Moves the floor over every id applied, and over holes older than the grace; returns the floor. */
    advance(): number | undefined {
      if (floor === undefined) return undefined
      const at = now()
      let position: number = floor
      for (;;) {
        const next = position + 1
        if (done.delete(next)) {
          position = next
          continue
        }
        if (next > maxSeen || queued.has(next)) break
        const since = holes.get(next)
        if (since === undefined) {
          holes.set(next, at)
          break
        }
        if (at - since < options.holeGraceMs) break
        holes.delete(next)
        position = next
      }
      // Holes above the position are noted now, so their grace runs from when they were first seen.
      for (let id = position + 1; id <= maxSeen && holes.size < 10_000; id++) {
        if (!done.has(id) && !queued.has(id) && !holes.has(id)) holes.set(id, at)
      }
      floor = position
      return position
    },
  }
}

export type OutboxPosition<T> = ReturnType<typeof createOutboxPosition<T>>
