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

    @Test("both sides timed per cell and round, finite ratios, same parameter count and threads")
    func table() throws {
        // Fails (never skips) without the venv's Python; the peer fails the run without diffusers.
        let python = try TestPaths.requirePython()
        let (status, text) = try runCLI(["bench", "compare", "--python", python, "--threads", "1", "--steps", "1",
                                         "--warmup", "0", "--rounds", "2", "--batch", "1,2"])
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
    }

    @Test("a missing Python fails with how to install it")
    func missingPython() throws {
        let (status, text) = try runCLI(["bench", "compare", "--python", "/nonexistent/python", "--steps", "1"])
        #expect(status != 0)
        #expect(text.contains("no Python at /nonexistent/python") && text.contains("make venv"), "\(text)")
    }
}
