// BenchCompareTests.swift — `personalive bench compare` (Sources/personalive/BenchCompare.swift and
// BenchComparePersonaLive.swift): the table has both sides for every cell and round with finite ratios,
// the PyTorch peer of the stage-1 step and the streaming chunk computes our values on our weights, and a
// missing Python is a clear error. The peer's own parity with ../shared/fixtures: PyTorchPeerFixtureTests.
import Foundation
import Testing

@Suite("bench compare", .serialized)
struct BenchCompareTests {
    func runCLI(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let bin = try #require(TestPaths.personaliveBinary, "build the personalive product first (make test does)")
        return try TestPaths.run(bin, arguments)
    }

    @Test("both sides timed per cell and round, finite ratios, same parameter count and threads, the PersonaLive cells at parity; --profile traces and op counts")
    func table() throws {
        // Fails (never skips) without the venv's Python; the peer fails the run without diffusers.
        let python = try TestPaths.requirePython()
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("bench-profile-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: profile) }
        let (status, text) = try runCLI(["bench", "compare", "--python", python, "--threads", "1", "--steps", "3",
                                         "--warmup", "0", "--rounds", "2", "--batch", "1,2", "--stage1-batch", "2",
                                         "--profile", profile.path])
        try #require(status == 0, "bench compare failed:\n\(text)")
        #expect(text.contains("ours:    LibTorch "), "\(text)")
        #expect(text.contains("PyTorch: torch "), "\(text)")
        #expect(text.contains("1 threads, Swift") && text.contains("eager, 1 threads"), "\(text)")
        // Same config on both sides: the parameter counts printed agree (the command also checks it).
        #expect(text.contains("636412 parameters (ours) / 636412 (PyTorch)"), "\(text)")
        // The stage-1 step and the window pass: the same networks on both sides, and the same loss and
        // window output on the same weights and inputs (the command fails otherwise).
        #expect(text.contains("parity before timing: stage-1 loss"), "\(text)")
        let counts = try #require(text.split(separator: "\n").first { $0.hasPrefix("stage-1 step: ") }, "\(text)")
        let numbers = counts.components(separatedBy: CharacterSet.decimalDigits.inverted).compactMap(Int.init).filter { $0 > 1000 }
        #expect(numbers.count == 4 && numbers[0] == numbers[1] && numbers[2] == numbers[3] && numbers[2] > numbers[0], "\(counts)")
        for cell in ["forward b1", "fwd+bwd b1", "forward b2", "fwd+bwd b2", "stage-1 step b2", "stream window b1"] {
            let row = try #require(text.split(separator: "\n").first { $0.hasPrefix("| \(cell) |") }, "no row \(cell):\n\(text)")
            let columns = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            try #require(columns.count == 5, "\(row)")
            let values = columns[1...].map { $0.components(separatedBy: " / ").map { Double($0) } }
            for (name, v) in zip(["ours", "PyTorch", "ratio", "ratio of means"], values) {
                #expect(v.count == 2, "\(cell) \(name): one value per round expected in \(row)")
                #expect(v.allSatisfy { $0 != nil && $0!.isFinite && $0! > 0 }, "\(cell) \(name): \(row)")
            }
            // The ratio is the medians' (the columns before it), to their printed rounding.
            for (o, (t, r)) in zip(values[0], zip(values[1], values[2])) {
                if let o, let t, let r { #expect(abs(r - o / t) <= 0.01 + 0.03 * r, "\(cell): \(row)") }
            }
        }

        // The fwd+bwd split: forward and backward medians on both sides, positive and finite.
        for b in [1, 2] {
            let row = try #require(text.split(separator: "\n").first { $0.hasPrefix("| batch \(b) |") }, "no split for b\(b):\n\(text)")
            let v = row.split(separator: "|").dropFirst().map { Double($0.trimmingCharacters(in: .whitespaces)) }
            #expect(v.count == 4 && v.allSatisfy { $0 != nil && $0! > 0 && $0!.isFinite }, "\(row)")
        }

        // --profile: ops per step on both sides (the same LibTorch ops for the same diffusers model,
        // so within a factor of 2 of each other), with readable Chrome traces for every cell.
        for (cell, file) in [("forward b1", "forward_b1"), ("fwd+bwd b1", "backward_b1"), ("forward b2", "forward_b2"),
                             ("fwd+bwd b2", "backward_b2"), ("stage-1 step b2", "stage1_b2"), ("stream window b1", "window_b1")] {
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

    @Test("a stage-1 batch below 1 and a config of another stage are refused, naming the option or file")
    func badStage1Options() throws {
        let python = try TestPaths.requirePython()
        let (s1, t1) = try runCLI(["bench", "compare", "--python", python, "--stage1-batch", "0", "--steps", "1"])
        #expect(s1 != 0 && t1.contains("--stage1-batch must be positive"), "\(t1)")
        let vae = TestPaths.packageRoot.appendingPathComponent("Configs/tiny/vae.yaml").path
        let (s2, t2) = try runCLI(["bench", "compare", "--python", python, "--stage1", vae, "--steps", "1"])
        #expect(s2 != 0 && t2.contains("\(vae) is a vae config, not stage1"), "\(t2)")
        #expect(!t2.contains("Traceback"), "the peer should leave quietly:\n\(t2)")
    }

    @Test("a missing Python fails with how to install it")
    func missingPython() throws {
        let (status, text) = try runCLI(["bench", "compare", "--python", "/nonexistent/python", "--steps", "1"])
        #expect(status != 0)
        #expect(text.contains("no Python at /nonexistent/python") && text.contains("make venv"), "\(text)")
    }
}

/// The PyTorch peer's modules (Sources/personalive/Peer) against the reference-generated fixtures, so that
/// `bench compare` times PersonaLive's computation on the PyTorch side, not a look-alike.
@Suite("PyTorch peer parity")
struct PyTorchPeerFixtureTests {
    @Test("check_peer_fixtures.py: every case it checks within the case's tolerance")
    func peerMatchesFixtures() throws {
        let python = try TestPaths.requirePython()
        let script = TestPaths.packageRoot.appendingPathComponent("Sources/personalive/Peer/check_peer_fixtures.py")
        var env = ProcessInfo.processInfo.environment
        env["OMP_NUM_THREADS"] = "1"
        let (status, text) = try TestPaths.run(URL(fileURLWithPath: python), [script.path, TestPaths.fixtures.path],
                                               environment: env)
        #expect(status == 0, "\(text)")
        for c in ["personalive/unet3d_tiny", "personalive/unet3d_tiny_with_reference", "personalive/motion_module",
                  "personalive/temporal_module", "personalive/pose_guider", "training/stage1_step_tiny",
                  "streaming/stream_loop_tiny"] {
            #expect(text.split(separator: "\n").contains { $0.hasPrefix("\(c):") && $0.hasSuffix(" ok") }, "no passing line for \(c):\n\(text)")
        }
    }
}
