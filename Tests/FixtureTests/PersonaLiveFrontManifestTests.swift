// PersonaLiveFrontManifestTests.swift — the full-size PoseGuider, motion encoder and motion
// extractor, built with uninitialised storage, have exactly the state dicts PyTorch lists in
// manifests/personalive_{pose_guider,motion_encoder,motion_extractor}.json: the same keys in the
// same order, shapes, dtypes, count, state-dict total and parameter total.
import Foundation
import Testing
import FixtureKit
import Models
import NN
import Torch

@Suite struct PersonaLiveFrontManifestTests {
    /// Keys in order, shapes and dtypes; the listed and own key counts against num_keys; the
    /// state-dict element and parameter totals.
    static func expectMatches(_ model: Module, _ file: String) throws {
        let manifest = try Manifest(file)
        manifest.expectMatch(model, dtypes: true)
        #expect(manifest.entries.count == (try manifest.int("num_keys")), "\(file): listed keys vs num_keys")
        try manifest.expectTotals(of: model)
    }

    @Test("PoseGuider matches personalive_pose_guider.json")
    func poseGuider() throws {
        let m = try ParameterInit.uninitialized { try PoseGuider() }
        try Self.expectMatches(m, "personalive_pose_guider.json")
    }

    @Test("MotionEncoder matches personalive_motion_encoder.json")
    func motionEncoder() throws {
        let m = try ParameterInit.uninitialized { try MotionEncoder() }
        try Self.expectMatches(m, "personalive_motion_encoder.json")
    }

    @Test("MotionExtractor matches personalive_motion_extractor.json")
    func motionExtractor() throws {
        let m = try ParameterInit.uninitialized { try MotionExtractor() }
        try Self.expectMatches(m, "personalive_motion_extractor.json")
    }

    /// The default configs are the reference sizes; shrunken ones keep the key layout.
    @Test("front-end configs decode strictly and shrink")
    func configs() throws {
        let dec = JSONDecoder()
        let me = try dec.decode(MotionExtractor.Config.self, from: Data(#"{"num_kp": 21, "backbone": "convnextv2_tiny (default)", "num_bins": 66}"#.utf8))
        #expect(me == MotionExtractor.Config())
        #expect(throws: (any Error).self) { try dec.decode(MotionExtractor.Config.self, from: Data(#"{"num_kps": 21}"#.utf8)) }
        #expect(throws: (any Error).self) { try dec.decode(MotionEncoder.Config.self, from: Data(#"{"out_chan": 16}"#.utf8)) }
        #expect(throws: (any Error).self) { try dec.decode(PoseGuider.Config.self, from: Data(#"{"block_out": [4]}"#.utf8)) }

        let small = MotionEncoder.Config(image_size: 64, base_channels: 8, hourglass_depth: 2, attention_heads: 2,
                                         attention_head_dim: 16, norm_num_groups: 4)
        let enc = try MotionEncoder(small)
        enc.eval()
        let tokens = try Torch.noGrad { try enc(Tensor.rand([2, 3, 64, 64]) * 2 - 1) }
        #expect(tokens.shape == [2, 32, 16])
        let full = try ParameterInit.uninitialized { try MotionEncoder() }
        #expect(enc.stateDict().map(\.0) == full.stateDict().map(\.0).filter { !$0.contains("b1_4") && !$0.contains("b2_4")
            && !$0.contains("b3_4") && !$0.contains("b1_3") && !$0.contains("b2_3") && !$0.contains("b3_3") })

        let ext = try MotionExtractor(MotionExtractor.Config(depths: [1, 1], dims: [8, 16]))
        ext.eval()
        let kp = try Torch.noGrad { try ext(Tensor.rand([2, 3, 64, 64])) }
        #expect(kp.shape == [2, 21, 3])
    }

    /// Values from the case.json's numpy reference (python_reference), compared bit for bit.
    @Test("splitmix64 weights formula matches the numpy reference")
    func weightsFormula() {
        let cases: [(k: Int, a: Double, b: Double, want: [Float])] = [
            (1, 0.05, 0, [0x1.b44f0ep-6, -0x1.325afap-5, 0x1.4934acp-6, 0x1.b368b0p-7]),
            (212, 0.1, 1, [0x1.01f0c6p+0, 0x1.0210fcp+0, 0x1.005534p+0]),
            (5, 0.25, 1, [0x1.1b18f4p+0, 0x1.f10738p-1]),
        ]
        for c in cases {
            let got = WeightsFormula.values(index: c.k, count: c.want.count, scale: c.a, offset: c.b)
            #expect(got.map(\.bitPattern) == c.want.map(\.bitPattern), "k=\(c.k): \(got) vs \(c.want)")
        }
    }

    /// Known rotation: 90° yaw maps the x axis onto −z for row vectors (k · R with R = (Rz·Ry·Rx)ᵀ).
    @Test("rotation matrix and bins → degrees")
    func rotation() throws {
        let zero = try Tensor([Float(0)]), ninety = try Tensor([Float(90)])
        let r = try Keypoints.rotationMatrix(pitch: zero, yaw: ninety, roll: zero)
        let x = try Tensor([Float(1), 0, 0], shape: [1, 1, 3])
        let v = try x.matmul(r).toArray(Float.self)
        for (got, want) in zip(v, [Float(0), 0, -1]) { #expect(Swift.abs(got - want) < 1e-6, "\(v)") }
        // Uniform logits: the mean bin 32.5 → 32.5·3 − 97.5 = 0 degrees.
        let d = try Keypoints.degrees(Tensor.zeros([1, 66])).item()
        #expect(Swift.abs(d) < 1e-4)
    }

    @Test("keypoint discs keep the reference's proportion on smaller canvases")
    func renderRadius() throws {
        #expect(Keypoints.renderRadius(canvasSize: 512) == Keypoints.renderRadius)
        #expect(Keypoints.renderRadius(canvasSize: 256) == 2)
        #expect(Keypoints.renderRadius(canvasSize: 64) == 1)
        #expect(Keypoints.renderRadius(canvasSize: 16) == 1)
        // Seven keypoints spread on a line: radius 1 draws seven separate 5-pixel discs, radius 4
        // (the reference's) 49-pixel discs.
        var kp = [Float](repeating: 0, count: 21 * 3)
        for (j, i) in Keypoints.renderedIndices.enumerated() { kp[i * 3] = -0.85 + 0.28 * Float(j) }
        let keypoints = try Tensor(kp, shape: [1, 21, 3])
        for (radius, area) in [(1, 5), (4, 49)] {
            let canvas = try Keypoints.draw(keypoints, height: 64, width: 64, radius: radius)
            let lit = try canvas.amax([1]).gt(0).to(.float32).sum().item()
            #expect(lit == Double(7 * area), "radius \(radius): \(lit) lit pixels")
        }
    }
}
