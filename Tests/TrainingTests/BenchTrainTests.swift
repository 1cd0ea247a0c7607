// BenchTrainTests.swift — `personalive bench train` (Sources/personalive/BenchTrain.swift): the
// per-phase split and `--profile`, which traces exactly the first timed step.
import Foundation
import Testing

@Suite(.serialized) struct BenchTrainTests {
    @Test("bench train splits a step per phase; --profile writes a Chrome trace of one step")
    func profileOneStep() throws {
        let dir = try scratchWithDataset()
        defer { try? FileManager.default.removeItem(at: dir) }
        try tinyVAEConfig(steps: 1, checkpointEvery: 1).write(to: dir.appendingPathComponent("vae.yaml"),
                                                              atomically: true, encoding: .utf8)
        let (status, out) = try runCLI(["bench", "train", "--config", "vae.yaml", "--steps", "2", "--warmup", "1",
                                        "--threads", "1", "--profile", "step.json"], in: dir)
        try #require(status == 0, "bench train failed:\n\(out)")
        for phase in ["ms/step", "data", "forward", "backward", "optimizer", "trace of step 2"] {
            #expect(out.contains(phase), "no '\(phase)' in:\n\(out)")
        }
        let data = try Data(contentsOf: dir.appendingPathComponent("step.json"))
        // torch.autograd.profiler's Chrome trace: a JSON array of events (or {"traceEvents": [...]}).
        let json = try JSONSerialization.jsonObject(with: data)
        let events = try #require(json as? [[String: Any]] ?? (json as? [String: Any])?["traceEvents"] as? [[String: Any]],
                                  "not a Chrome trace")
        let names = events.compactMap { $0["name"] as? String }
        // One step of the VAE: its convolutions forward and backward, one optimizer step.
        #expect(names.contains("aten::convolution_backward") && names.contains { $0.hasPrefix("aten::conv") })
        #expect(names.filter { $0 == "aten::_fused_adamw_" || $0 == "aten::addcdiv_" }.count >= 1)
        let adamSteps = names.filter { $0 == "aten::_fused_adamw_" }.count
        #expect(adamSteps <= 1, "the trace holds \(adamSteps) fused AdamW calls: more than one step")
        // Nothing else is written next to the run: bench train keeps its outputs in a temporary folder.
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("Checkpoints").path))

        // The first step fills caches, so a profile needs a warm-up step; several processes are refused.
        let (s2, o2) = try runCLI(["bench", "train", "--config", "vae.yaml", "--warmup", "0", "--profile", "x.json"], in: dir)
        #expect(s2 != 0 && o2.contains("--warmup"), "\(o2)")
        let (s3, o3) = try runCLI(["bench", "train", "--config", "vae.yaml", "--nproc", "2", "--profile", "x.json"], in: dir)
        #expect(s3 != 0 && o3.contains("--nproc"), "\(o3)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("x.json").path))
    }
}
