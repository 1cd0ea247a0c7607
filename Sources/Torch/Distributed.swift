// Distributed.swift — torch.distributed's building blocks for Swift (torch/distributed/distributed_c10d.py,
// torch/csrc/distributed/c10d/TCPStore.hpp, ProcessGroupGloo.hpp, ProcessGroupNCCL.hpp): a TCPStore
// rendezvous, a process group (Gloo on CPU, NCCL on CUDA) and the collectives data-parallel training
// needs — bucketed averaged all-reduce, broadcast, barrier. Every call has a timeout; a dead or stuck
// peer becomes a thrown TorchError, never a hang.
import CTorch
import Foundation

/// A c10d communication backend.
public enum DistributedBackend: String, Sendable, CaseIterable {
    case gloo, nccl

    var code: Int32 { self == .gloo ? Int32(TC_PG_GLOO) : Int32(TC_PG_NCCL) }

    /// Whether this build can create the backend (Gloo needs gloo's headers at build time, NCCL a
    /// CUDA LibTorch built with TORCH_CUDA=1).
    public var isAvailable: Bool {
        var out: Int32 = 0
        return tc_distributed_backend_available(code, &out) == 0 && out != 0
    }
}

/// torch.distributed.TCPStore: a key-value store served by one process (rank 0) at host:port that
/// every rank connects to; the rendezvous of the process group.
public final class TCPStore: @unchecked Sendable {
    let handle: OpaquePointer
    public let host: String
    public let port: Int
    public let timeout: Double

    /// `isServer`: this process serves the store (rank 0). `timeout` (seconds) bounds connecting
    /// and every blocking call.
    public init(host: String, port: Int, isServer: Bool, worldSize: Int, timeout: Double) throws {
        var out: OpaquePointer?
        try check(tc_tcp_store_create(host, Int32(port), isServer ? 1 : 0, Int32(worldSize), Int64(timeout * 1000), &out))
        handle = out!
        self.host = host
        self.port = port
        self.timeout = timeout
    }
    deinit { tc_store_free(handle) }

    public func set(_ key: String, _ value: [UInt8]) throws {
        try value.withUnsafeBufferPointer { try check(tc_store_set(handle, key, $0.baseAddress, Int64($0.count))) }
    }

    /// Waits (up to the store's timeout) for `key` and returns its value.
    public func get(_ key: String) throws -> [UInt8] {
        var p: UnsafeMutablePointer<UInt8>?
        var n: Int64 = 0
        try check(tc_store_get(handle, key, &p, &n))
        defer { tc_buffer_free(p) }
        return Array(UnsafeBufferPointer(start: p, count: Int(n)))
    }

    @discardableResult
    public func add(_ key: String, _ delta: Int64) throws -> Int64 {
        var out: Int64 = 0
        try check(tc_store_add(handle, key, delta, &out))
        return out
    }

    public func contains(_ key: String) throws -> Bool {
        var out: Int32 = 0
        try check(tc_store_check(handle, key, &out))
        return out != 0
    }
}

/// A background thread that adds 1 to a store counter every `interval` seconds over its own
/// connection (how a rank shows it is alive). Stops when released.
public final class StoreHeartbeat: @unchecked Sendable {
    let handle: OpaquePointer
    public init(host: String, port: Int, key: String, interval: Double, timeout: Double) throws {
        var out: OpaquePointer?
        try check(tc_heartbeat_start(host, Int32(port), key, Int64(interval * 1000), Int64(timeout * 1000), &out))
        handle = out!
    }
    deinit { tc_heartbeat_stop(handle) }
}

/// A c10d process group (torch.distributed.ProcessGroup) over a store.
public final class ProcessGroup: @unchecked Sendable {
    let handle: OpaquePointer
    public let backend: DistributedBackend
    public let rank: Int
    public let worldSize: Int
    /// Seconds after which a collective gives up with an error.
    public let timeout: Double
    /// Bytes per all-reduce / broadcast bucket (DDP's bucket_cap_mb, 25 MiB).
    public var bucketBytes = 25 << 20

    /// `glooHostname`: the address Gloo listens on and advertises (nil: the host name's address).
    public init(store: TCPStore, backend: DistributedBackend, rank: Int, worldSize: Int, timeout: Double,
                glooHostname: String? = nil) throws {
        var out: OpaquePointer?
        try check(tc_process_group_create(store.handle, backend.code, Int32(rank), Int32(worldSize), Int64(timeout * 1000),
                                          glooHostname, &out))
        handle = out!
        self.backend = backend
        self.rank = rank
        self.worldSize = worldSize
        self.timeout = timeout
    }
    deinit { tc_process_group_free(handle) }

    /// In place: each tensor becomes its mean over all ranks.
    public func allReduceMean(_ tensors: [Tensor]) throws {
        try withHandles(tensors) { try check(tc_pg_allreduce_mean(handle, $0, $1, Int64(bucketBytes), Int64(timeout * 1000))) }
    }

    /// The sum of `t` over all ranks, differentiable: the backward sums the gradient over the ranks
    /// too (SyncBatchNorm's collective), so a loss on every rank reaches every rank's input.
    public func allReduceSum(differentiable t: Tensor) throws -> Tensor {
        try make { tc_pg_allreduce_sum_autograd(handle, t.handle, Int64(timeout * 1000), $0) }
    }

    /// In place: each tensor becomes rank `root`'s value.
    public func broadcast(_ tensors: [Tensor], root: Int = 0) throws {
        try withHandles(tensors) {
            try check(tc_pg_broadcast(handle, $0, $1, Int32(root), Int64(bucketBytes), Int64(timeout * 1000)))
        }
    }

    public func barrier() throws { try check(tc_pg_barrier(handle, Int64(timeout * 1000))) }

    func withHandles(_ tensors: [Tensor], _ body: (UnsafeMutablePointer<OpaquePointer?>, Int32) throws -> Void) throws {
        if tensors.isEmpty { return }
        var handles: [OpaquePointer?] = tensors.map { $0.handle }
        try withExtendedLifetime(tensors) {
            try handles.withUnsafeMutableBufferPointer { try body($0.baseAddress!, Int32($0.count)) }
        }
    }
}
