// UNet3DManifestTests.swift — PersonaLive's full-size denoising UNet (UNet3DConditionModel) and
// reference UNet, built with uninitialised storage, have exactly the state-dict keys, shapes, order
// and totals of the manifests (the temporal manifest is the `temporal_modules` subset); their
// reference-attention pairing; strict config decoding; from_pretrained_2d loading; and the bank
// token dropout / keyframe semantics of ReferenceAttentionControl on tiny models.
import Foundation
import Testing
import FixtureKit
import Models
import NN
import Torch

@Suite struct UNet3DManifestTests {
    @Test("full-size denoising UNet, its temporal modules and the reference UNet match the manifests")
    func fullSize() throws {
        let manifest = try Manifest("personalive_denoising_unet.json")
        // The manifest nests unet_additional_kwargs; it must mean PersonaLive's stage-3 denoiser.
        let config = try manifest.config(UNet3DConditionModel.Config.self)
        #expect(config == .personalive())
        let denoiser = try ParameterInit.uninitialized { try UNet3DConditionModel(config) }
        let state = denoiser.stateDict()
        ManifestComparison(state, with: manifest.entries).expectMatch(manifest.file)
        try manifest.expectTotals(of: denoiser)
        #expect(denoiser.namedMotionModules.count == 21)
        #expect(denoiser.namedTemporalModules.count == 21)

        // What train_stage3 saves: the keys containing 'temporal_modules'.
        let temporal = try Manifest("personalive_temporal_module.json")
        ManifestComparison(state.filter { $0.0.contains("temporal_modules") }, with: temporal.entries)
            .expectMatch("temporal_modules vs \(temporal.file)")
        #expect(temporal.entries.count == (try temporal.int("num_keys")))

        // Stages 1–2 build it without temporal modules.
        let stage12 = try ParameterInit.uninitialized { try UNet3DConditionModel(.personalive(useTemporalModule: false)) }
        ManifestComparison(stage12.stateDict(), with: manifest.entries.filter { !$0.key.contains("temporal_modules") })
            .expectMatch("stage 1–2 UNet vs \(manifest.file) less temporal_modules")

        let refManifest = try Manifest("personalive_reference_unet.json")
        let reference = try ParameterInit.uninitialized {
            try UNet2DConditionModel(refManifest.config(UNet2DConditionModel.Config.self), withOutputLayers: false)
        }
        refManifest.expectMatch(reference)
        try refManifest.expectTotals(of: reference, stateDictElements: nil, parameters: nil)

        // 16 spatial transformer blocks on each side, paired widest first, DFS order among equals.
        let control = try ReferenceAttentionControl(writer: reference, reader: denoiser)
        defer { control.detach() }
        #expect(control.pairedBlockCount == 16)
        #expect(control.pairs.map(\.channels) == Array(repeating: 1280, count: 6) + Array(repeating: 640, count: 5)
                + Array(repeating: 320, count: 5))
        #expect(control.pairs.allSatisfy { $0.reader == $0.writer })
        #expect(control.pairs.first?.reader == "down_blocks.2.attentions.0.transformer_blocks.0")
        #expect(control.pairs[5].reader == "mid_block.attentions.0.transformer_blocks.0")
        #expect(denoiser.transformerBlocks.allSatisfy { $0.attn1.heads == 8 })
    }

    @Test("the 3D config decodes strictly: unknown, doubled and unsupported keys are errors")
    func strictConfig() throws {
        func decode(_ json: String) throws -> UNet3DConditionModel.Config {
            try JSONDecoder().decode(UNet3DConditionModel.Config.self, from: Data(json.utf8))
        }
        #expect { try decode(#"{"use_motion_modul": true}"#) } throws: {
            "\($0)".contains("use_motion_modul") && "\($0)".contains("use_motion_module'")
        }
        #expect { try decode(#"{"unet_additional_kwargs": {"use_temporal_modul": true}}"#) } throws: {
            "\($0)".contains("use_temporal_modul")
        }
        #expect { try decode(#"{"use_motion_module": false, "unet_additional_kwargs": {"use_motion_module": true}}"#) } throws: {
            "\($0)".contains("both")
        }
        #expect { try decode(#"{"dual_cross_attention": true}"#) } throws: { "\($0)".contains("dual_cross_attention") }
        #expect { try decode(#"{"use_motion_module": true, "motion_module_type": "Other"}"#) } throws: {
            "\($0)".contains("Vanilla")
        }
        #expect { try decode(#"{"motion_module_kwargs": {"num_heads": 8}}"#) } throws: { "\($0)".contains("num_heads") }
        // Flat and nested spellings mean the same model; encoding round-trips.
        let flat = try decode(#"{"use_temporal_module": true, "temporal_module_type": "Vanilla"}"#)
        let nested = try decode(#"{"unet_additional_kwargs": {"use_temporal_module": true, "temporal_module_type": "Vanilla"}}"#)
        #expect(flat == nested)
        let personalive = UNet3DConditionModel.Config.personalive()
        #expect(try JSONDecoder().decode(UNet3DConditionModel.Config.self, from: JSONEncoder().encode(personalive)) == personalive)
    }

    // MARK: tiny models

    static func tiny2D() -> UNet2DConditionModel.Config {
        var c = UNet2DConditionModel.Config()
        c.down_block_types = ["CrossAttnDownBlock2D", "DownBlock2D"]
        c.up_block_types = ["UpBlock2D", "CrossAttnUpBlock2D"]
        c.block_out_channels = [32, 64]
        c.layers_per_block = .one(1)
        c.norm_num_groups = 8
        c.cross_attention_dim = .one(16)
        c.attention_head_dim = .one(4)
        return c
    }

    static func tiny3D(temporal: Bool = true) throws -> UNet3DConditionModel.Config {
        var c = try UNet3DConditionModel.Config(inflating: tiny2D())
        c.applyPersonaLiveKwargs(useTemporalModule: temporal)
        return c
    }

    @Test("from_pretrained_2d: 2D weights plus renamed temporal weights, strict up to the allow-list")
    func fromPretrained2D() throws {
        try Torch.manualSeed(7)
        let unet2D = try UNet2DConditionModel(Self.tiny2D())
        let source2D = TensorDictSource(unet2D.stateDict())

        // Without temporal weights: only motion and temporal modules may be missing.
        let model = try UNet3DConditionModel.fromPretrained2D(try Self.tiny3D(), unet2DStateDict: source2D)
        let own = Dictionary(uniqueKeysWithValues: model.stateDict())
        for (key, t) in unet2D.stateDict() {
            #expect(try own[key].map { try $0.maxAbsDiff(t) } == 0, "\(key) not copied")
        }

        // An AnimateDiff-style temporal checkpoint: `motion_modules.` keys, pos_encoder tables dropped.
        let donor = try UNet3DConditionModel(try Self.tiny3D())
        var temporalDict: [String: Tensor] = [:]
        for (key, t) in donor.stateDict() where key.contains("temporal_modules.") {
            temporalDict[key.replacingOccurrences(of: "temporal_modules.", with: "motion_modules.")] = try t + 0.5
        }
        let report = try model.loadPretrained2D(unet2DStateDict: source2D, temporal: TensorDictSource(temporalDict))
        #expect(report.missing.allSatisfy { !$0.contains("temporal_modules") || $0.hasSuffix("pos_encoder.pe") })
        let loaded = Dictionary(uniqueKeysWithValues: model.stateDict())
        for (key, t) in donor.stateDict() where key.contains("temporal_modules.") && !key.contains("pos_encoder") {
            #expect(try loaded[key].map { try $0.maxAbsDiff(t + 0.5) } == 0, "\(key) not loaded")
        }

        // Anything else unexpected is an error naming the key.
        var extra = unet2D.stateDict()
        extra.append(("down_blocks.0.bogus.weight", try Tensor.zeros([1])))
        #expect {
            try model.loadPretrained2D(unet2DStateDict: TensorDictSource(extra))
        } throws: { "\($0)".contains("down_blocks.0.bogus.weight") }
    }

    @Test("reader block: shared tokens projected once per sample = the reference's repeat to every frame, then projection")
    func readerBlockProjectsSharedTokensOncePerSample() throws {
        try Torch.manualSeed(12)
        let block = try TemporalBasicTransformerBlock(dim: 8, heads: 2, headDim: 4, crossAttentionDim: nil)
        let (b, f, l, ls) = (2, 3, 5, 7)
        let hidden = try Tensor.randn([b * f, l, 8]).requiresGrad_()
        let shared = try Tensor.randn([b, ls, 8]).requiresGrad_()
        block.selfAttentionHook = { _, normed, frames in
            #expect(normed.shape == [b * f, l, 8] && frames == f)
            return shared
        }
        let out = try block(hidden, context: nil, videoLength: f)

        // The reference: keys/values = to_k/to_v(cat([norm1(h), the shared tokens repeated to each frame])).
        let a = block.attn1
        let n1 = try block.norm1(hidden)
        let kv = try Tensor.cat([n1, shared.repeatInterleave(f, dim: 0)], dim: 1)
        var want = try a.output(a.attend(q: a.to_q(n1), k: a.to_k(kv), v: a.to_v(kv))) + hidden
        want = try block.ff(block.norm3(want)) + want
        #expect(try out.maxAbsDiff(want) < 1e-6)
        // The shared tokens' gradient sums over the frames that read them, as through the repeat.
        let r = try Tensor.randn(out.shape)
        let got = try Autograd.grad(outputs: [(out * r).sum()], inputs: [hidden, shared])
        let ref = try Autograd.grad(outputs: [(want * r).sum()], inputs: [hidden, shared])
        for k in 0..<2 { #expect(try #require(got[k]).maxAbsDiff(try #require(ref[k])) < 1e-5) }
    }

    @Test("reference attention: per-frame bank, token dropout from given draws, keyframes up to three")
    func referenceAttention() throws {
        try Torch.manualSeed(11)
        let writer = try UNet2DConditionModel(Self.tiny2D(), withOutputLayers: false)
        let reader = try UNet3DConditionModel(try Self.tiny3D(temporal: false))
        let control = try ReferenceAttentionControl(writer: writer, reader: reader)
        defer { control.detach() }
        // Mid block (64 wide) first, then the 32-wide blocks in DFS order (down, then up).
        #expect(control.pairs.map(\.reader) == ["mid_block.attentions.0.transformer_blocks.0",
                                                "down_blocks.0.attentions.0.transformer_blocks.0",
                                                "up_blocks.1.attentions.0.transformer_blocks.0",
                                                "up_blocks.1.attentions.1.transformer_blocks.0"])

        let (b, f) = (2, 3)
        let clip = try Tensor.randn([b, 1, 16])
        let motion = try Tensor.randn([b, f, 32, 16])
        let sample = try Tensor.randn([b, 4, f, 8, 8])
        let t = try Tensor.full([b * f], 500, dtype: .int64)
        try Torch.noGrad {
            let plain = try reader(sample, timesteps: t, clip: clip, motion: motion)
            _ = try writer(Tensor.randn([b, 4, 8, 8]), timestep: 0, encoderHiddenStates: clip)
            #expect(control.writerBanks.map { $0.count } == [1, 1, 1, 1])

            // Dropout keeps the int(L·0.7) tokens with the smallest draws, in increasing draw order.
            let draws = try control.writerBanks.map { try Tensor.rand([b, $0[0].shape[1]]) }
            try control.update(dropRatio: 0.3, draws: draws)
            for j in 0..<control.pairedBlockCount {
                let bank = control.writerBanks[j][0], kept = control.readerBanks[j][0]
                let l = bank.shape[1], keep = Int(Double(l) * 0.7)
                #expect(kept.shape == [b, keep, bank.shape[2]])
                #expect(kept.dtype == .float16)
                let order = try draws[j].argsort(dim: 1).toArray(Int64.self)
                for s in 0..<b {
                    let first = Int(order[s * l]), last = Int(order[s * l + keep - 1])
                    for (pos, src) in [(0, first), (keep - 1, last)] {
                        let want = try bank.select(0, s).select(0, src).to(.float16)
                        #expect(try kept.select(0, s).select(0, pos).maxAbsDiff(want) == 0)
                    }
                }
            }
            #expect(throws: (any Error).self) { try control.update(dropRatio: 0.3, draws: Array(draws.dropLast())) }

            // With the full bank the output changes; an empty bank is plain self-attention again.
            try control.update(dropRatio: 0)
            let withBank = try reader(sample, timesteps: t, clip: clip, motion: motion)
            #expect(try withBank.maxAbsDiff(plain) > 1e-4)
            // The unconditional branch of guidance: the bank set aside is plain self-attention,
            // and it is back afterwards.
            let withoutBank = try control.withoutReference { try reader(sample, timesteps: t, clip: clip, motion: motion) }
            #expect(try withoutBank.maxAbsDiff(plain) == 0)
            #expect(try reader(sample, timesteps: t, clip: clip, motion: motion).maxAbsDiff(withBank) == 0)
            try control.update(dropRatio: 0.3, generator: try Generator(seed: 3))
            #expect(control.readerBanks[1][0].shape[1] == 44)

            // Keyframes accumulate up to maxKeyframes, then are refused; clearKeyframes resets.
            for n in 1...3 {
                control.clearWriter()
                _ = try writer(Tensor.randn([b, 4, 8, 8]), timestep: 0, encoderHiddenStates: clip)
                #expect(try control.updateKeyframe())
                #expect(control.keyframeCount == n)
            }
            #expect(control.keyframeBanks[0].map { $0.shape } == [b, 3, 16, 64])
            #expect(try control.updateKeyframe() == false)
            _ = try reader(sample, timesteps: t, clip: clip, motion: motion)
            control.clearKeyframes()
            #expect(control.keyframeCount == 0)

            control.clear()
            let cleared = try reader(sample, timesteps: t, clip: clip, motion: motion)
            #expect(try cleared.maxAbsDiff(plain) == 0)
        }
    }

    // MARK: the stage-1 training case (reader with bank token dropout, f = 1, per-sample t)

    @Test("stage1_step_tiny: denoiser predictions and gradients through the dropped fp16 bank")
    func stage1Reader() throws {
        let c = try FixtureCase(directory: TestPaths.fixtures.appendingPathComponent("training/stage1_step_tiny"))
        func sub<T: Decodable>(_ key: String) throws -> T { try #require(c.config[key]).decode(T.self) }
        let denoiser = try UNet3DConditionModel(sub("denoising_unet"))
        try denoiser.load(from: c.weights())
        let reference = try UNet2DConditionModel(sub("reference_unet"), withOutputLayers: false)
        try reference.load(from: c.weights("weights_reference.safetensors"))
        let control = try ReferenceAttentionControl(writer: reference, reader: denoiser)
        defer { control.detach() }
        let bankBlocks = try #require(c.config["bank_blocks"]?.array)
        #expect(control.pairs.map(\.reader) == bankBlocks.compactMap { $0["reader_block"]?.string })

        let noisy = try c.expected("out.noisy_latents"), t = try c.input("timesteps")
        let clip = try c.input("clip_embeds"), motion = try c.input("motion"), pose = try c.input("pose_fea")
        let draws = try (0..<control.pairedBlockCount).map { try c.input("bank_rand.block\($0)") }
        let b = noisy.shape[0]

        /// Net.forward of train_stage1.py: writer at t = 0 unless uncond, update(drop_ratio=0.3), denoiser.
        func predict(uncond: Bool, dropped: Bool) throws -> Tensor {
            control.clear()
            if !uncond {
                _ = try reference(c.input("ref_latent"), timestep: Tensor.zeros([b], dtype: .int64), encoderHiddenStates: clip)
                try control.update(dropRatio: 0.3, draws: draws)
            }
            return try denoiser(noisy, timesteps: t, clip: clip, motion: dropped ? Tensor.zeros(motion.shape) : motion,
                                poseCond: dropped ? nil : pose)
        }
        try Torch.noGrad {
            for (variant, uncond, dropped) in [("main", false, false), ("drop_pose_motion", false, true), ("uncond", true, false)] {
                let err = try predict(uncond: uncond, dropped: dropped).maxAbsDiff(c.expected("out.\(variant).model_pred"))
                #expect(err < 1e-4, "\(variant): model_pred err \(err)")
            }
        }
        // The kept token indices of the first sample, as the reference's debug output lists them.
        for j in 0..<control.pairedBlockCount {
            let l = draws[j].shape[1], keep = Int(Double(l) * 0.7)
            let ids = try draws[j].argsort(dim: 1).narrow(1, start: 0, length: keep)
            #expect(try ids.maxAbsDiff(c.expected("out.bank_keep_idx.block\(j)").to(.int64)) == 0)
        }

        // Main variant's loss, backpropagated into both UNets (x0 from ε as get_x0_from_eps does).
        let scheduler = try DDIMScheduler(sub("scheduler"))
        let a = try scheduler.alphasCumprod.indexSelect(0, t).reshape([b, 1, 1, 1, 1])
        let latents = try c.input("tgt_latent"), mask = try c.expected("out.facial_mask")
        let eps = try predict(uncond: false, dropped: false)
        let x0 = try (1.0 / a).sqrt() * noisy - (1.0 / a - 1).sqrt() * eps
        let loss = try F.mseLoss(x0, latents) + F.mseLoss(x0 * mask, latents * mask)
        #expect(try loss.reshape([1]).maxAbsDiff(c.expected("out.main.loss")) <= 1e-5 * abs(loss.item()))
        try loss.backward()
        let params = Dictionary(uniqueKeysWithValues: denoiser.namedParameters())
        let key = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
        for (got, want, rel) in [(try #require(params[key]?.grad), try c.expected("out.main.grad.\(key)"), 1e-4),
                                 (try #require(reference.conv_in.weight.grad), try c.expected("out.main.grad_ref.conv_in.weight"), 2e-3)] {
            let scale = try want.abs().max().item()
            #expect(try got.maxAbsDiff(want) <= rel * scale)
        }
    }
}
