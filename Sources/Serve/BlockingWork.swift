// BlockingWork.swift — runs model work (seconds of LibTorch per call) on a thread of its own and
// awaits it, so that it never blocks Swift's cooperative pool or NIO's event loops (the role a
// thread-pool executor plays under the reference's FastAPI server).
import Foundation

struct UncheckedBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// `body` on a new thread; its result or error comes back to the awaiting task.
func onThread<T>(_ name: String, _ body: @escaping () throws -> T) async throws -> T {
    let work = UncheckedBox(body)
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<UncheckedBox<T>, Error>) in
        let thread = Thread {
            do { continuation.resume(returning: UncheckedBox(try work.value())) } catch { continuation.resume(throwing: error) }
        }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }.value
}
