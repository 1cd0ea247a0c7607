// ValidationMetricsTests.swift — each stage-1 validation metric against a case with a known answer:
// head angles from bin logits that encode a known rotation, the pose error of that rotation, the
// face-box pixel MSE of identical and offset images, and the masked latent MSE of identical and
// offset latents and of the PyTorch reference's own training iteration (stage1_step_tiny).
import Foundation
import Testing
import Torch
@testable import Training

@Suite struct ValidationMetricsTests {
    /// Bin logits (1, 66) whose softmax expectation is `degrees` (a multiple of 1.5 in ±97.5):
    /// two equal, dominant logits at the neighbouring bins, or one at the exact bin.
    static func logits(degrees: Double) throws -> Tensor {
        let bin = (degrees + 97.5) / 3
        var v = [Float](repeating: 0, count: 66)
        if bin == bin.rounded() {
            v[Int(bin)] = 60
        } else {
            v[Int(bin.rounded(.down))] = 60
            v[Int(bin.rounded(.up))] = 60
        }
        return try Tensor(v).reshape([1, 66])
    }

    static func angles(_ pitch: Double, _ yaw: Double, _ roll: Double) throws -> Tensor {
        try ValidationMetrics.headAngles(pitch: logits(degrees: pitch), yaw: logits(degrees: yaw), roll: logits(degrees: roll),
                                         numBins: 66, idx: Tensor.arange(0, 66, dtype: .float32))
    }

    @Test func headAnglesReadAKnownRotation() throws {
        let a = try Self.angles(0, 30, -31.5).toArray(Float.self)
        #expect(a.count == 3)
        #expect(abs(a[0] - 0) < 1e-4 && abs(a[1] - 30) < 1e-4 && abs(a[2] + 31.5) < 1e-4, "\(a)")
    }

    @Test func poseErrorIsTheRotationAngle() throws {
        let frontal = try Self.angles(0, 0, 0)
        // Identical poses → 0.
        #expect(try ValidationMetrics.poseError(frontal, frontal) == 0)
        // A 30° yaw against frontal: 30° on one of three axes → mean 10°.
        let turned = try Self.angles(0, 30, 0)
        #expect(abs(try ValidationMetrics.poseError(turned, frontal) - 10) < 1e-4)
        // 15° pitch, −30° yaw and 45° roll: (15 + 30 + 45) / 3 = 30°, in either order.
        let tilted = try Self.angles(15, -30, 45)
        #expect(abs(try ValidationMetrics.poseError(tilted, frontal) - 30) < 1e-4)
        #expect(abs(try ValidationMetrics.poseError(frontal, tilted) - 30) < 1e-4)
        // (2, 3) against a broadcast (1, 3): the mean over both samples, (10 + 30) / 2.
        let both = try Tensor.cat([turned, tilted], dim: 0)
        #expect(abs(try ValidationMetrics.poseError(both, frontal) - 20) < 1e-4)
    }

    @Test func faceMSECountsOnlyTheFaceBox() throws {
        let target = try Tensor.rand([2, 3, 8, 8]) * 2 - 1
        var m = [Float](repeating: 0, count: 2 * 8 * 8)
        for n in 0..<2 { for y in 2..<6 { for x in 1..<5 { m[n * 64 + y * 8 + x] = 1 } } }
        let mask = try Tensor(m).reshape([2, 1, 8, 8])
        // Identical images → 0.
        #expect(try ValidationMetrics.faceMSE(target, target, faceMask: mask) == 0)
        // +0.5 inside the box and +3 outside: only the box counts, (0.5)² = 0.25.
        let offset = try target + mask * 0.5 + (1 - mask) * 3
        #expect(abs(try ValidationMetrics.faceMSE(offset, target, faceMask: mask) - 0.25) < 1e-5)
        // An empty box divides by 1, not 0.
        #expect(try ValidationMetrics.faceMSE(offset, target, faceMask: mask * 0) == 0)
    }

    @Test func maskedMSEWeighsFaceOnceAndEyesAndMouthTwice() throws {
        let target = try Tensor.randn([1, 4, 1, 8, 8])
        // Face: the left half; eyes and mouth: the top-left quadrant (inside the face).
        var f = [Float](repeating: 0, count: 64), l = [Float](repeating: 0, count: 64)
        for y in 0..<8 { for x in 0..<4 { f[y * 8 + x] = 1; if y < 4 { l[y * 8 + x] = 1 } } }
        let face = try Tensor(f).reshape([1, 1, 8, 8]), local = try Tensor(l).reshape([1, 1, 8, 8])
        #expect(try ValidationMetrics.maskedMSE(x0: target, target: target, faceMask: face, localMask: local) == 0)
        // x̂0 off by 1 everywhere: m² is 4 on 16 pixels, 1 on 16, 0 on 32 → 80 / 64 = 1.25.
        let got = try ValidationMetrics.maskedMSE(x0: target + 1, target: target, faceMask: face, localMask: local)
        #expect(abs(got - 1.25) < 1e-5, "\(got)")
    }

    /// The reference's own iteration: its x̂0, target latents and masks give its loss_local.
    @Test func maskedMSEMatchesThePyTorchReference() throws {
        let root = ProcessInfo.processInfo.environment["PERSONALIVE_FIXTURES"].flatMap { $0.isEmpty ? nil : $0 }
            ?? TrainingTestPaths.packageRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures").path
        let io = try SafeTensorsFile(path: root + "/training/stage1_step_tiny/io.safetensors")
        for variant in ["main", "uncond", "drop_pose_motion"] {
            let got = try ValidationMetrics.maskedMSE(x0: io.tensor("out.\(variant).x0_pred"), target: io.tensor("in.tgt_latent"),
                                                      faceMask: io.tensor("in.face_mask"), localMask: io.tensor("in.local_mask"))
            let want: Double = try io.tensor("out.\(variant).loss_local").reshape([]).item()
            #expect(abs(got - want) <= 1e-5 * abs(want), "\(variant): \(got) vs reference \(want)")
        }
    }
}
