// Prefetcher.swift — background batch production with a bounded queue (torch DataLoader with
// num_workers and prefetch_factor): worker threads build batches for upcoming steps while training
// runs; `next()` hands them out strictly in step order; at most `capacity` finished or in-flight
// batches exist at once, so memory stays bounded. A worker's error surfaces at that step.
import Foundation

public final class Prefetcher<Batch>: @unchecked Sendable {
    public let capacity: Int
    public let workers: Int
    private let state: State

    /// Starts `workers` threads producing `make(step)` for step = startStep, startStep+1, … (up to
    /// `endStep`, exclusive, when given).
    public init(startStep: Int = 0, endStep: Int? = nil, capacity: Int = 4, workers: Int = 2,
                make: @escaping @Sendable (Int) throws -> Batch) {
        self.capacity = max(1, capacity)
        self.workers = max(1, workers)
        state = State(startStep: startStep, endStep: endStep, capacity: self.capacity, workers: self.workers, make: make)
        for w in 0..<self.workers {
            // Workers hold only the shared state, so dropping the Prefetcher stops them.
            let t = Thread { [state] in state.work() }
            t.name = "personalive.prefetch.\(w)"
            t.start()
        }
    }

    deinit {
        state.stop()
    }

    /// The batch for the next step (blocks until it is ready); nil after `endStep`.
    public func next() throws -> (step: Int, batch: Batch)? { try state.next() }

    /// Batches produced but not yet taken (for tests and monitoring).
    public var queued: Int { state.queued }

    /// Stops the workers and waits for them to finish their current batch.
    public func stop() { state.stop() }

    private final class State: @unchecked Sendable {
        let capacity: Int
        let make: @Sendable (Int) throws -> Batch
        let endStep: Int?
        let condition = NSCondition()
        var nextToIssue: Int
        var nextToDeliver: Int
        var ready: [Int: Result<Batch, Error>] = [:]
        var stopped = false
        var running: Int

        init(startStep: Int, endStep: Int?, capacity: Int, workers: Int, make: @escaping @Sendable (Int) throws -> Batch) {
            self.capacity = capacity
            self.make = make
            self.endStep = endStep
            nextToIssue = startStep
            nextToDeliver = startStep
            running = workers
        }

        func work() {
            while true {
                condition.lock()
                // Wait until a step may be issued: within the window and not past the end.
                while !stopped && (nextToIssue - nextToDeliver >= capacity || endStep.map { nextToIssue >= $0 } == true) {
                    condition.wait()
                }
                if stopped {
                    running -= 1
                    condition.broadcast()
                    condition.unlock()
                    return
                }
                let step = nextToIssue
                nextToIssue += 1
                condition.unlock()

                let result = Result { try make(step) }

                condition.lock()
                ready[step] = result
                condition.broadcast()
                condition.unlock()
            }
        }

        func next() throws -> (step: Int, batch: Batch)? {
            condition.lock()
            defer { condition.unlock() }
            let step = nextToDeliver
            if let end = endStep, step >= end { return nil }
            while ready[step] == nil && !stopped { condition.wait() }
            guard let result = ready.removeValue(forKey: step) else { throw SamplerError("prefetcher was stopped") }
            nextToDeliver += 1
            condition.broadcast()
            return (step, try result.get())
        }

        var queued: Int {
            condition.lock()
            defer { condition.unlock() }
            return ready.count
        }

        func stop() {
            condition.lock()
            stopped = true
            condition.broadcast()
            while running > 0 { condition.wait() }
            ready.removeAll()
            condition.unlock()
        }
    }
}
