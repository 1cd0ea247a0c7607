// BenchCompareTests.swift — `personalive bench compare` (Sources/personalive/BenchCompare.swift): the
// table has both sides for every cell and round with finite ratios, and a missing Python is a clear error.
import Foundation
import Testing

@Suite("bench compare", .serialized)
struct BenchCompareTests {
    func runCLI(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let bin = try #require(TestPaths.personaliveBinary, "build the personalive product first (make test does)")
        let p = Process()
        p.executableURL = bin
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    @Test("both sides timed per cell and round, finite ratios, same parameter count and threads; --profile traces and op counts")
    func table() throws {
        // Fails (never skips) without the venv's Python; the peer fails the run without diffusers.
        let python = try TestPaths.requirePython()
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("bench-profile-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: profile) }
        let (status, text) = try runCLI(["bench", "compare", "--python", python, "--threads", "1", "--steps", "1",
                                         "--warmup", "0", "--rounds", "2", "--batch", "1,2", "--profile", profile.path])
        try #require(status == 0, "bench compare failed:\n\(text)")
        #expect(text.contains("ours:    LibTorch "), "\(text)")
        #expect(text.contains("PyTorch: torch "), "\(text)")
        #expect(text.contains("1 threads, Swift") && text.contains("eager, 1 threads"), "\(text)")
        // Same config on both sides: the parameter counts printed agree (the command also checks it).
        #expect(text.contains("636412 parameters (ours) / 636412 (PyTorch)"), "\(text)")
        for cell in ["forward b1", "fwd+bwd b1", "forward b2", "fwd+bwd b2"] {
            let row = try #require(text.split(separator: "\n").first { $0.hasPrefix("| \(cell) |") }, "no row \(cell):\n\(text)")
            let columns = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            try #require(columns.count == 4, "\(row)")
            let values = columns[1...].map { $0.components(separatedBy: " / ").map { Double($0) } }
            for (name, v) in zip(["ours", "PyTorch", "ratio"], values) {
                #expect(v.count == 2, "\(cell) \(name): one value per round expected in \(row)")
                #expect(v.allSatisfy { $0 != nil && $0!.isFinite && $0! > 0 }, "\(cell) \(name): \(row)")
            }
        }

        // --profile: ops per step on both sides (the same LibTorch ops for the same diffusers model,
        // so within a factor of 2 of each other), with readable Chrome traces for every cell.
        for (cell, file) in [("forward b1", "forward_b1"), ("fwd+bwd b1", "backward_b1"), ("forward b2", "forward_b2"),
                             ("fwd+bwd b2", "backward_b2")] {
            let rows = text.split(separator: "\n").filter { $0.hasPrefix("| \(cell) |") }
            let row = try #require(rows.count == 2 ? rows[1] : nil, "no op-count row for \(cell):\n\(text)")
            let columns = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            let (ours, theirs) = (Int(columns[1]) ?? 0, Int(columns[2]) ?? 0)
            #expect(ours > 50 && theirs > 50 && ours < 2 * theirs && theirs < 2 * ours, "\(row)")
            for side in ["ours", "pytorch"] {
                let trace = profile.appendingPathComponent("\(side)_\(file).json")
                let json = try JSONSerialization.jsonObject(with: Data(contentsOf: trace))
                let events = (json as? [[String: Any]]) ?? ((json as? [String: Any])?["traceEvents"] as? [[String: Any]]) ?? []
                #expect(events.contains { ($0["name"] as? String)?.hasPrefix("aten::conv") == true }, "\(trace.path)")
            }
        }
        let tsv = try String(contentsOf: profile.appendingPathComponent("ops.tsv"), encoding: .utf8)
        #expect(tsv.contains("backward_b1\tours\taten::convolution_backward\t"), "\(tsv.prefix(400))")
    }

    @Test("a missing Python fails with how to install it")
    func missingPython() throws {
        let (status, text) = try runCLI(["bench", "compare", "--python", "/nonexistent/python", "--steps", "1"])
        #expect(status != 0)
        #expect(text.contains("no Python at /nonexistent/python") && text.contains("make venv"), "\(text)")
    }
}
