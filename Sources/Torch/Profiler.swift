// Profiler.swift — torch.autograd.profiler.profile's Chrome trace (RecordProfile) and an op count on
// RecordFunction, the events torch.profiler reports (CTorch/ctorch_profile.cpp).
import CTorch

public enum Profiler {
    /// Runs `body` while every op is recorded; the Chrome trace (chrome://tracing, Perfetto) is
    /// written to `path` when it returns, also when it throws.
    public static func trace<R>(to path: String, _ body: () throws -> R) throws -> R {
        let session = try Session(path: path)
        let result: R
        do {
            result = try body()
        } catch {
            try? session.end()
            throw error
        }
        try session.end()
        return result
    }

    /// A trace started now and written by `end()`: for spans that a closure cannot enclose (e.g. one
    /// step of a training loop, between two of its events). A session not ended is ended, and its
    /// trace written, when it is released.
    public final class Session {
        private var handle: OpaquePointer?
        public let path: String

        public init(path: String) throws {
            self.path = path
            try check(tc_profile_begin(path, &handle))
        }

        /// Whether `end()` is still to come.
        public var isRecording: Bool { handle != nil }

        /// Stops recording and writes the trace; later calls do nothing.
        public func end() throws {
            guard let h = handle else { return }
            handle = nil
            try check(tc_profile_end(h))
        }

        deinit { if let h = handle { _ = tc_profile_end(h) } }
    }

    /// Operator calls (`aten::…`) and autograd backward nodes (`…Backward0`) made while `body`
    /// runs on this thread (and the autograd engine's work for it), by name; other threads' ops
    /// are not counted.
    public static func countOps(_ body: () throws -> Void) throws -> [String: Int] {
        try check(tc_op_count_begin())
        var bodyError: Error?
        do { try body() } catch { bodyError = error }
        var text: UnsafeMutablePointer<UInt8>?
        var length: Int64 = 0
        try check(tc_op_count_end(&text, &length))
        defer { tc_buffer_free(text) }
        if let bodyError { throw bodyError }
        guard let text else { return [:] }
        var counts: [String: Int] = [:]
        for line in String(decoding: UnsafeBufferPointer(start: text, count: Int(length)), as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: "\t")
            if parts.count == 2, let n = Int(parts[1]) { counts[String(parts[0]), default: 0] += n }
        }
        return counts
    }
}
