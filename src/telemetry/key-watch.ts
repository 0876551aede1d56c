/**
 * Hot keys and miss spikes, per window, in bounded memory and O(1) amortised work per lookup.
 *
 * Counting uses the Misra-Gries frequent-items summary: at most `capacity` counters. A key already counted costs one
 * Map lookup and an increment; a new key takes a free counter, or, when none is free, every counter is decremented
 * and those reaching zero are dropped. Each decrement pays back an earlier increment, so a lookup costs O(1)
 * amortised however adversarial the traffic (a flood of unique tokens included). Counts are lower bounds, short of
 * the truth by at most lookups/(capacity+1), and any key with more than that share of the window is always present.
 *
 * Keys are token hashes in memory only: everything exported or logged is the first 8 hex characters of the hash.
 */

interface Counter {
  n: number
}

export class FrequentItems {
  private readonly counters = new Map<string, Counter>()

  constructor(readonly capacity: number) {}

  /** Counts one occurrence; returns the key's count (0 when it could not be given a counter). */
  add(key: string): number {
    const counter = this.counters.get(key)
    if (counter !== undefined) return ++counter.n
    if (this.counters.size < this.capacity) {
      this.counters.set(key, { n: 1 })
      return 1
    }
    for (const [other, c] of this.counters) if (--c.n === 0) this.counters.delete(other)
    return 0
  }

  /** The k largest counts, largest first. */
  top(k: number): Array<{ key: string; count: number }> {
    const all: Array<{ key: string; count: number }> = []
    for (const [key, c] of this.counters) all.push({ key, count: c.n })
    return all.sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1)).slice(0, k)
  }

  get size(): number {
    return this.counters.size
  }

  clear(): void {
    this.counters.clear()
  }
}

/** What may leave the process for a key: 8 hex characters of its SHA-256, never the hash itself. */
export const keyId = (tokenHash: string) => tokenHash.slice(0, 8)

export interface KeyWatchOptions {
  /** Hot keys reported per window. */
  topK: number
  /** Counters per summary (bounds memory). */
  capacity: number
  /** Misses of one key within one window that make a miss spike. */
  missSpikeThreshold: number
  /**
   * Requests are counted for one lookup in this many (1: all), and reported scaled back up. A hot key stays hot in
   * a sample; what sampling saves is the churn of a summary that many distinct keys keep refilling (each new key is a
   * Map insert of its hash and, with the summary full, a pass over it): with traffic spread over more sessions than
   * `capacity`, that is most lookups. Misses are always counted (each one costs a Postgres read anyway).
   */
  sampleEvery?: number
}

export interface KeyWatchWindow {
  /** The most requested keys of the window (key ids), most requested first. */
  hot: Array<{ key: string; requests: number }>
  /** The key with the most misses in the window, if any missed. */
  mostMissed: { key: string; misses: number } | undefined
}

/**
 * `lookup` runs on every validation (the hot path); `rotate` closes the window (on a timer, off the hot path).
 * `onMissSpike` is called at most once per key per window, the moment its misses reach the threshold.
 */
export function createKeyWatch(options: KeyWatchOptions, onMissSpike: (key: string, misses: number) => void) {
  const requests = new FrequentItems(options.capacity)
  const misses = new FrequentItems(options.capacity)
  // Keys already reported this window; at most `capacity` of them are remembered.
  const spiked = new Set<string>()
  const sampleEvery = Math.max(1, Math.floor(options.sampleEvery ?? 1))
  let tick = 0

  return {
    lookup(tokenHash: string, hit: boolean): void {
      if (++tick >= sampleEvery) {
        tick = 0
        requests.add(tokenHash)
      }
      if (hit) return
      const count = misses.add(tokenHash)
      if (count >= options.missSpikeThreshold && !spiked.has(tokenHash) && spiked.size < options.capacity) {
        spiked.add(tokenHash)
        onMissSpike(keyId(tokenHash), count)
      }
    },

    rotate(): KeyWatchWindow {
      const hot = requests.top(options.topK).map(({ key, count }) => ({ key: keyId(key), requests: count * sampleEvery }))
      const [missed] = misses.top(1)
      requests.clear()
      misses.clear()
      spiked.clear()
      return { hot, mostMissed: missed ? { key: keyId(missed.key), misses: missed.count } : undefined }
    },
  }
}

export type KeyWatch = ReturnType<typeof createKeyWatch>
