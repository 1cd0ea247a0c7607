// DataParallel.swift — data-parallel training for the trainer, as torch/nn/parallel/distributed.py
// (DistributedDataParallel: rank 0's weights broadcast at start, gradients averaged in buckets before
// the optimizer) does it over c10d, with torchrun's environment contract (torch/distributed/run.py:
// RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). The data shards are the samplers' own
// (torch/utils/data/distributed.py's DistributedSampler role: rank r takes batches r, r + W, …).
// A failed collective is diagnosed through the store's heartbeats, so the error names the dead rank.
import Foundation
import Logging
import NN
import Torch

/// torchrun's environment: which process this is and where the rendezvous is.
public struct DistributedEnvironment: Sendable, Equatable {
    public var rank: Int
    public var worldSize: Int
    public var localRank: Int
    public var masterAddr: String
    public var masterPort: Int

    public init(rank: Int, worldSize: Int, localRank: Int, masterAddr: String, masterPort: Int) {
        self.rank = rank
        self.worldSize = worldSize
        self.localRank = localRank
        self.masterAddr = masterAddr
        self.masterPort = masterPort
    }

    /// The torchrun variables, or nil when WORLD_SIZE is not set (a plain single-process run).
    /// Missing or malformed values are errors naming the variable.
    public static func from(_ env: [String: String]) throws -> DistributedEnvironment? {
        guard let ws = env["WORLD_SIZE"], !ws.isEmpty else { return nil }
        func int(_ name: String, default d: Int? = nil) throws -> Int {
            guard let s = env[name], !s.isEmpty else {
                if let d { return d }
                throw TrainingError.invalid("WORLD_SIZE is set, so \(name) must be too (torchrun sets RANK, WORLD_SIZE, "
                                            + "LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")
            }
            guard let v = Int(s) else { throw TrainingError.invalid("\(name)='\(s)' is not an integer") }
            return v
        }
        let worldSize = try int("WORLD_SIZE")
        guard worldSize >= 1 else { throw TrainingError.invalid("WORLD_SIZE=\(worldSize) must be at least 1") }
        let rank = try int("RANK", default: worldSize == 1 ? 0 : nil)
        guard (0..<worldSize).contains(rank) else {
            throw TrainingError.invalid("RANK=\(rank) is not in 0..<WORLD_SIZE (\(worldSize))")
        }
        let localRank = try int("LOCAL_RANK", default: rank)
        let addr = env["MASTER_ADDR"].flatMap { $0.isEmpty ? nil : $0 } ?? (worldSize == 1 ? "127.0.0.1" : nil)
        guard let addr else { throw TrainingError.invalid("WORLD_SIZE=\(worldSize) needs MASTER_ADDR (rank 0's address)") }
        let port = try int("MASTER_PORT", default: worldSize == 1 ? 29500 : nil)
        guard (1...65535).contains(port) else { throw TrainingError.invalid("MASTER_PORT=\(port) is not a TCP port") }
        return DistributedEnvironment(rank: rank, worldSize: worldSize, localRank: localRank, masterAddr: addr, masterPort: port)
    }

    var isLoopback: Bool { masterAddr == "localhost" || masterAddr.hasPrefix("127.") || masterAddr == "::1" }
}

/// A distributed failure, naming the rank(s) it blames.
public struct DistributedError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// One process's membership of a data-parallel run: the store, the process group, the heartbeat.
public final class DataParallel {
    public let environment: DistributedEnvironment
    public let group: ProcessGroup
    let store: TCPStore
    let heartbeat: StoreHeartbeat
    let logger: Logger
    /// Heartbeat period (seconds); a rank silent for 3 periods counts as dead.
    let beat = 0.5
    /// Seconds spent in gradient all-reduces, and how many optimizer syncs they were.
    public private(set) var allReduceSeconds = 0.0
    public private(set) var allReduceCount = 0

    public var rank: Int { environment.rank }
    public var worldSize: Int { environment.worldSize }
    public var isMain: Bool { environment.rank == 0 }

    /// Joins the run: rank 0 serves the TCPStore at MASTER_ADDR:MASTER_PORT, every rank connects and
    /// the process group forms. `timeout` (seconds) bounds the rendezvous and every collective.
    public init(environment e: DistributedEnvironment, backend: DistributedBackend = .gloo, timeout: Double = 60,
                logger: Logger) throws {
        guard backend.isAvailable else {
            throw DistributedError(message: backend == .gloo
                ? "this build cannot train with more than one process: CTorch was built without Gloo (the gloo headers, "
                  + "Debian's libgloo-dev, were missing at build time; install libgloo-dev and rebuild)"
                : "this build has no NCCL: build against a CUDA LibTorch with TORCH_CUDA=1, or train on the CPU with Gloo")
        }
        environment = e
        self.logger = logger
        do {
            store = try TCPStore(host: e.masterAddr, port: e.masterPort, isServer: e.rank == 0, worldSize: e.worldSize,
                                 timeout: timeout)
        } catch {
            throw DistributedError(message: e.rank == 0
                ? "rank 0 could not serve the rendezvous store at \(e.masterAddr):\(e.masterPort): \(error)"
                : "rank \(e.rank) could not reach rank 0's rendezvous store at \(e.masterAddr):\(e.masterPort) "
                  + "within \(Int(timeout)) s: \(error)")
        }
        heartbeat = try StoreHeartbeat(host: e.masterAddr, port: e.masterPort, key: Self.aliveKey(e.rank), interval: beat,
                                       timeout: timeout)
        do {
            group = try ProcessGroup(store: store, backend: backend, rank: e.rank, worldSize: e.worldSize, timeout: timeout,
                                     glooHostname: e.isLoopback ? "127.0.0.1" : ProcessInfo.processInfo.environment["GLOO_HOSTNAME"])
        } catch {
            throw DistributedError(message: "rank \(e.rank): the \(backend.rawValue) process group of \(e.worldSize) "
                                   + "did not form within \(Int(timeout)) s: \(error)")
        }
        logger.info("rank \(e.rank) of \(e.worldSize) joined (\(backend.rawValue), rendezvous \(e.masterAddr):\(e.masterPort))")
    }

    static func aliveKey(_ rank: Int) -> String { "personalive/alive/\(rank)" }
    static func failedKey(_ rank: Int) -> String { "personalive/failed/\(rank)" }

    // MARK: collectives, each turning a failure into an error that names the rank to blame

    /// Rank 0's parameters and buffers overwrite every other rank's (DDP's initial broadcast).
    public func broadcastModules(_ modules: [Module]) throws {
        let tensors = modules.flatMap { $0.namedParameters().map(\.1) + $0.namedBuffers().map(\.1) }
        try collective("broadcast of the initial weights") { try group.broadcast(tensors, root: 0) }
    }

    /// torch.nn.SyncBatchNorm.convert_sync_batchnorm: every BatchNorm2d under `modules` takes its
    /// training statistics over all ranks. Returns how many layers were converted.
    @discardableResult
    public func synchroniseBatchNorm(_ modules: [Module]) -> Int {
        let layers = modules.flatMap { $0.namedModules().compactMap { $0.1 as? BatchNorm2d } }
        for bn in layers { bn.processGroup = group }
        return layers.count
    }

    /// Every parameter's gradient becomes the mean over ranks. A parameter without a gradient on
    /// this rank but with one on another gets zeros first, so that every rank reduces the same
    /// buckets; one without a gradient on any rank keeps none, so the optimizer skips it (no
    /// weight decay, no step count) exactly as one process over the whole batch would.
    public func averageGradients(_ parameters: [Tensor], name: String) throws {
        let has = try Tensor(parameters.map { $0.grad == nil ? Float(0) : 1 }).to(parameters.first?.device ?? .cpu)
        try collective("agreeing on optimizer '\(name)' parameters with gradients") { try group.allReduceMean([has]) }
        let usedSomewhere = try has.toArray(Float.self).map { $0 > 0 }
        var grads: [Tensor] = []
        for (p, used) in zip(parameters, usedSomewhere) where used {
            if let g = p.grad {
                grads.append(g)
            } else {
                let z = try Tensor.zeros(p.shape, dtype: p.dtype, device: p.device)
                try p.setGrad(z)
                grads.append(z)
            }
        }
        let t0 = Date()
        try collective("all-reduce of optimizer '\(name)' gradients") { try group.allReduceMean(grads) }
        allReduceSeconds += Date().timeIntervalSince(t0)
        allReduceCount += 1
    }

    /// The mean over ranks of named scalars (every rank must pass the same names).
    public func averageScalars(_ values: [String: Double]) throws -> [String: Double] {
        let keys = values.keys.sorted()
        guard !keys.isEmpty else { return values }
        let t = try Tensor(keys.map { values[$0]! })
        try collective("averaging the logged loss terms") { try group.allReduceMean([t]) }
        return Dictionary(uniqueKeysWithValues: zip(keys, try t.toArray(Double.self)))
    }

    public func barrier(_ what: String) throws { try collective(what) { try group.barrier() } }

    /// Each rank's `bytes` under `key`, in rank order, on rank 0 (nil elsewhere): how rank 0 learns
    /// the other ranks' RNG states for a checkpoint.
    public func gatherToMain(_ key: String, _ bytes: [UInt8]) throws -> [[UInt8]]? {
        try collective("gathering '\(key)' on rank 0") {
            if !isMain {
                try store.set("personalive/gather/\(key)/\(rank)", bytes)
                return nil
            }
            var all = [bytes]
            for r in 1..<worldSize { all.append(try store.get("personalive/gather/\(key)/\(r)")) }
            return all
        }
    }

    /// Leaves a note for the other ranks that this one failed (best effort), so that their own
    /// diagnosis blames the rank that stopped first.
    public func reportFailure(_ message: String) {
        _ = try? store.set(Self.failedKey(rank), Array(message.utf8))
    }

    func collective<R>(_ what: String, _ body: () throws -> R) throws -> R {
        do {
            return try body()
        } catch {
            let blame = diagnose()
            reportFailure("\(what) failed")
            throw DistributedError(message: "rank \(rank): \(what) failed: \(blame) (\(error))")
        }
    }

    /// Which ranks stopped: those whose heartbeat counter did not move over 3 beats and that left
    /// no failure note; when the store itself is gone, rank 0 (which serves it).
    func diagnose() -> String {
        do {
            func counts() throws -> [Int64] { try (0..<worldSize).map { try store.add(Self.aliveKey($0), 0) } }
            let before = try counts()
            Thread.sleep(forTimeInterval: 3 * beat)
            let after = try counts()
            var silent: [Int] = [], failed: [Int] = []
            for r in 0..<worldSize where r != rank && after[r] == before[r] {
                if try store.contains(Self.failedKey(r)) { failed.append(r) } else { silent.append(r) }
            }
            if !silent.isEmpty {
                return (silent.count == 1 ? "rank \(silent[0]) is" : "ranks \(silent.map(String.init).joined(separator: ", ")) are")
                    + " gone (no heartbeat for \(3 * beat) s)"
            }
            if !failed.isEmpty {
                return "rank\(failed.count == 1 ? "" : "s") \(failed.map(String.init).joined(separator: ", ")) failed first"
            }
            return "every rank still has a heartbeat (a rank stalled past the timeout of \(Int(group.timeout)) s?)"
        } catch {
            return "rank 0 is gone (its rendezvous store at \(environment.masterAddr):\(environment.masterPort) "
                + "does not answer)"
        }
    }
}
