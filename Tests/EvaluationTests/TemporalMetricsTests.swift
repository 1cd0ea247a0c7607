// TemporalMetricsTests.swift — the temporal-consistency and drift metrics of `evaluate` (stage 3's
// comparison): frame-to-frame differences of generated frames and ground truth, their gap, and the
// per-frame L1 split into the first and last quarter of the frames.
import Foundation
import Testing
import Torch
@testable import Evaluation

@Suite struct TemporalMetricsTests {
    @Test func frameDifferencesAndQuartersOnKnownFrames() throws {
        let n = 8
        // Generated: frame t is filled with 0.1·t (every step differs by 0.1); truth: constant 0.5.
        let g = try Tensor.cat((0..<n).map { try Tensor.full([1, 3, 12, 12], 0.1 * Double($0)) }, dim: 0)
        let y = try Tensor.full([n, 3, 12, 12], 0.5)
        let ev = Evaluator(model: nil, perceptual: nil)
        let m = try ev.pairMetrics(generated: g, truth: y, motion: false)
        let diff = try #require(m["frame_diff"]), gt = try #require(m["frame_diff_gt"]), err = try #require(m["frame_diff_error"])
        #expect(diff.count == n && diff[0] == nil && gt[0] == nil && err[0] == nil)
        for t in 1..<n {
            #expect(abs((diff[t] ?? -1) - 0.1) < 1e-6 && abs(gt[t] ?? -1) < 1e-9 && abs((err[t] ?? -1) - 0.1) < 1e-6)
        }
        // L1 of frame t is |0.1·t − 0.5|; the first quarter is frames 0–1, the last 6–7.
        let first = try #require(m["l1_first_quarter"]), last = try #require(m["l1_last_quarter"])
        #expect(first.compactMap { $0 }.count == 2 && last.compactMap { $0 }.count == 2)
        #expect(abs((first[0] ?? -1) - 0.5) < 1e-6 && abs((first[1] ?? -1) - 0.4) < 1e-6 && first[2] == nil)
        #expect(abs((last[6] ?? -1) - 0.1) < 1e-6 && abs((last[7] ?? -1) - 0.2) < 1e-6 && last[5] == nil)
        // The overall mean of a quarter metric is the mean over that quarter's frames.
        let clip = ClipResult(id: "c", frames: n, perFrame: m)
        let r = EvaluationResult(mode: "self-reenactment", label: "t", model: nil, modelDigest: nil, command: "", inputs: [:],
                                 clips: [clip], unavailable: [:], notes: [])
        #expect(abs((r.overall("l1_first_quarter") ?? -1) - 0.45) < 1e-6 && abs((r.overall("l1_last_quarter") ?? -1) - 0.15) < 1e-6)
        #expect(r.metricKeys.contains("frame_diff_error") && r.metricKeys.contains("l1_last_quarter"))
    }
}
