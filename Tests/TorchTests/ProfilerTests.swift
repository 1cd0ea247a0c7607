// ProfilerTests.swift — Profiler.countOps counts the operator calls and backward nodes of a known
// computation (and nothing outside it), and Profiler.trace writes a Chrome trace naming them.
import Foundation
import Testing
@testable import Torch

@Suite(.serialized) struct ProfilerTests {
    @Test func countsTheOpsOfAKnownComputation() throws {
        let a = try Tensor.randn([4, 3]).requiresGrad_(true), b = try Tensor.randn([4, 3])
        _ = try a + b  // before counting: not counted
        let counts = try Profiler.countOps {
            let y = try (a * b + b).sum()
            try y.backward()
        }
        #expect(counts["aten::mul", default: 0] >= 1 && counts["aten::add", default: 0] >= 1, "\(counts)")
        #expect(counts["aten::sum", default: 0] >= 1, "\(counts)")
        #expect(counts.keys.contains { $0.contains("MulBackward0") }, "no backward node counted: \(counts.keys.sorted())")
        #expect(counts["aten::matmul"] == nil && counts["aten::conv2d"] == nil, "ops that did not run: \(counts)")
        // Counting again starts from zero; a second begin while counting is an error, not a crash.
        let again = try Profiler.countOps { _ = try a.detach() * 2 }
        #expect(again["aten::mul"] == 1 && again["aten::add"] == nil, "\(again)")
        #expect(throws: TorchError.self) { try Profiler.countOps { _ = try Profiler.countOps {} } }

        // Another thread's ops at the same time are not counted (tests of other suites run in
        // parallel in this process).
        let done = DispatchSemaphore(value: 0)
        let other = Thread { for _ in 0..<200 { _ = try? b * 2.0 }; done.signal() }
        let busy = try Profiler.countOps {
            other.start()
            for _ in 0..<50 { _ = try a.detach().relu() }
            done.wait()
        }
        #expect(busy["aten::relu"] == 50 && busy["aten::mul"] == nil, "\(busy)")
    }

    @Test func writesAChromeTrace() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("trace-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let x = try Tensor.randn([8, 8])
        try Profiler.trace(to: path) { _ = try x.matmul(x).relu() }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
        let events = (json as? [[String: Any]]) ?? ((json as? [String: Any])?["traceEvents"] as? [[String: Any]]) ?? []
        let names = Set(events.compactMap { $0["name"] as? String })
        #expect(names.contains("aten::matmul") || names.contains("aten::mm"), "\(names.sorted())")
        #expect(names.contains("aten::relu"), "\(names.sorted())")

        // A body that throws: the error reaches the caller and the trace is still written.
        struct Stop: Error {}
        try FileManager.default.removeItem(atPath: path)
        #expect(throws: Stop.self) { try Profiler.trace(to: path) { _ = try x.relu(); throw Stop() } }
        #expect(FileManager.default.fileExists(atPath: path))
    }
}
