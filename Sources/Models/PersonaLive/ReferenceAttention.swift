// ReferenceAttention.swift — mirrors PersonaLive's src/models/mutual_self_attention.py
// ReferenceAttentionControl (one writer control on the reference UNet, one reader control on the
// denoising UNet, joined by `reader.update(writer)`), including the training-time bank token
// dropout (`update(drop_ratio=…)`) and the historical-keyframe bank (`update_hkf`, cache_kv).
//
// Writer: every BasicTransformerBlock of the reference UNet (a UNet2DConditionModel without
// conv_norm_out / conv_out, run at t = 0) records its norm1 output (b, L, C) during a normal forward.
// Reader: every TemporalBasicTransformerBlock of the UNet3DConditionModel keeps its queries but takes
// keys/values = [its own tokens, the reference tokens repeated to every frame, the keyframe tokens].
// Blocks are paired as the reference does: both lists in module DFS order, stably sorted by
// decreasing width (norm1.normalized_shape[0]), then zipped.
//
// Not ported: the classifier-free-guidance branch (uc_mask), which PersonaLive never enables, and
// reference AdaIN (reference_adain=False in every PersonaLive config).
import Foundation
import NN
import Torch

public final class ReferenceAttentionControl {
    /// One writer block feeding one reader block.
    public struct PairedBlock: Sendable, Equatable {
        /// Key path of the TemporalBasicTransformerBlock in the denoising UNet.
        public let reader: String
        /// Key path of the BasicTransformerBlock in the reference UNet.
        public let writer: String
        public let channels: Int
    }

    public let writer: UNet2DConditionModel
    public let reader: UNet3DConditionModel
    /// "full" (every transformer block) or "midup" (mid and up blocks only).
    public let fusionBlocks: String
    /// Store reader banks and keyframe banks in float16, as the reference's `update(dtype=torch.float16)`
    /// default does (the tokens are promoted back when concatenated, so only their rounding remains).
    /// On by default for parity; off keeps the writer's precision.
    public var roundBankToFP16: Bool
    /// Most keyframes `updateKeyframe()` accepts (PersonaLive's streaming keeps up to 3).
    public var maxKeyframes = 3
    /// The pairs, in pairing order (index j everywhere below).
    public let pairs: [PairedBlock]
    public var pairedBlockCount: Int { pairs.count }

    /// What writer block j recorded since the last clear: one (b, L_j, C_j) norm1 output per
    /// reference-UNet forward (the reference's `writer.bank`).
    public private(set) var writerBanks: [[Tensor]]
    /// The reference tokens reader block j attends to (after `update`), as stored.
    public private(set) var readerBanks: [[Tensor]]
    /// Keyframe tokens of reader block j, (b, n, L_j, C_j) with n keyframes (the reference's `kv_bank`).
    public private(set) var keyframeBanks: [Tensor?]

    private let writerBlocks: [BasicTransformerBlock]
    private let readerBlocks: [TemporalBasicTransformerBlock]

    /// Pairs the blocks and installs the hooks: the writer records on every forward (write mode)
    /// and the reader extends its self-attention (read mode) until `detach()`.
    public init(writer: UNet2DConditionModel, reader: UNet3DConditionModel, fusionBlocks: String = "full",
                roundBankToFP16: Bool = true) throws {
        guard fusionBlocks == "full" || fusionBlocks == "midup" else {
            throw TorchError("ReferenceAttentionControl: fusion_blocks must be 'full' or 'midup', got '\(fusionBlocks)'")
        }
        self.writer = writer
        self.reader = reader
        self.fusionBlocks = fusionBlocks
        self.roundBankToFP16 = roundBankToFP16

        let writers = Self.ordered(writer.namedModules().compactMap { n, m in
            (m as? BasicTransformerBlock).map { (n, $0, $0.config.dim) }
        }, fusionBlocks)
        let readers = Self.ordered(reader.namedModules().compactMap { n, m in
            (m as? TemporalBasicTransformerBlock).map { (n, $0, $0.dim) }
        }, fusionBlocks)
        guard writers.count == readers.count else {
            throw TorchError("ReferenceAttentionControl: the reference UNet has \(writers.count) transformer blocks, "
                             + "the denoising UNet \(readers.count); they must pair one to one")
        }
        var pairs: [PairedBlock] = []
        for (r, w) in zip(readers, writers) {
            guard r.2 == w.2 else {
                throw TorchError("ReferenceAttentionControl: \(r.0) (\(r.2) channels) pairs with \(w.0) (\(w.2) channels)")
            }
            pairs.append(PairedBlock(reader: r.0, writer: w.0, channels: r.2))
        }
        self.pairs = pairs
        writerBlocks = writers.map(\.1)
        readerBlocks = readers.map(\.1)
        writerBanks = Array(repeating: [], count: pairs.count)
        readerBanks = Array(repeating: [], count: pairs.count)
        keyframeBanks = Array(repeating: nil, count: pairs.count)

        attach()
    }

    /// (Re)installs this control's hooks on both UNets. Several controls may share one model (a
    /// server's streams); whichever attached last is the one the UNets use, so a user of a shared
    /// model attaches its own before every forward (Inference's ModelLock does).
    public func attach() {
        // Weak captures: the models hold the hooks, so strong ones would keep this control (and
        // through it the models) alive forever.
        for (j, block) in writerBlocks.enumerated() {
            block.selfAttentionHook = { [weak self] _, normed in
                self?.writerBanks[j].append(normed)
                return nil  // write mode: plain self-attention
            }
        }
        for (j, block) in readerBlocks.enumerated() {
            block.selfAttentionHook = { [weak self] _, normed, frames in
                try self?.extraTokens(j, normed: normed, videoLength: frames)
            }
        }
    }

    /// torch_dfs order restricted by fusion_blocks ("midup" lists the mid block before the up
    /// blocks, as `torch_dfs(mid_block) + torch_dfs(up_blocks)` does), then a stable sort by
    /// decreasing width.
    private static func ordered<B>(_ blocks: [(String, B, Int)], _ fusion: String) -> [(String, B, Int)] {
        var list = blocks
        if fusion == "midup" {
            list = blocks.filter { $0.0.hasPrefix("mid_block.") } + blocks.filter { $0.0.hasPrefix("up_blocks.") }
        }
        // Swift's sort is not documented as stable; sort on (−width, position) instead.
        return list.enumerated().sorted { a, b in
            a.element.2 != b.element.2 ? a.element.2 > b.element.2 : a.offset < b.offset
        }.map(\.element)
    }

    /// Removes the hooks: both UNets run plain again.
    public func detach() {
        for b in writerBlocks { b.selfAttentionHook = nil }
        for b in readerBlocks { b.selfAttentionHook = nil }
    }

    // MARK: banks

    /// Forgets everything: the writer's recordings, the reader's reference tokens and the keyframes
    /// (the reference's `writer.clear()` + `reader.clear()` with cache_kv).
    public func clear() {
        clearWriter()
        readerBanks = Array(repeating: [], count: pairs.count)
        clearKeyframes()
    }

    /// Runs `body` with the reader's reference tokens set aside (the reader attends to its own
    /// tokens and any keyframes only, as a training step with the reference dropped), then puts
    /// them back: the unconditional branch of classifier-free guidance without re-running the writer.
    public func withoutReference<T>(_ body: () throws -> T) rethrows -> T {
        let saved = readerBanks
        readerBanks = Array(repeating: [], count: pairs.count)
        defer { readerBanks = saved }
        return try body()
    }

    /// Forgets only the writer's recordings (`writer.clear()`), e.g. before recording a keyframe.
    public func clearWriter() {
        writerBanks = Array(repeating: [], count: pairs.count)
    }

    public func clearKeyframes() {
        keyframeBanks = Array(repeating: nil, count: pairs.count)
    }

    /// Number of keyframes the reader attends to.
    public var keyframeCount: Int { keyframeBanks.first.flatMap { $0?.shape[1] } ?? 0 }

    /// `reader.update(writer, drop_ratio=…)`: the reader's reference tokens become the writer's
    /// recordings. With `dropRatio` > 0 (training), each recording keeps int(L·(1 − dropRatio))
    /// tokens per sample: those with the smallest of L uniform draws (torch.rand(b, L) from
    /// `generator`, or the global generator when nil, like the reference), in that order; `shard`
    /// draws them for one data-parallel rank's rows of the global batch (BatchShard.swift).
    public func update(dropRatio: Double = 0, generator: Generator? = nil, shard: BatchShard = .whole) throws {
        try update(dropRatio: dropRatio) { n, l in try shard.rand([n, l], generator: generator) }
    }

    /// The same with the uniform draws given: draws[k] is the (b, L) torch.rand of the k-th
    /// recording in the reference's draw order (pair j outer, recordings inner) — after one writer
    /// pass, draws[j] belongs to paired block j. Unused (may be empty) when dropRatio is 0.
    public func update(dropRatio: Double, draws: [Tensor]) throws {
        let needed = dropRatio > 0 ? writerBanks.reduce(0) { $0 + $1.count } : 0
        guard dropRatio <= 0 || draws.count == needed else {
            throw TorchError("ReferenceAttentionControl.update: \(draws.count) draws given, \(needed) recordings to drop tokens from")
        }
        var k = 0
        try update(dropRatio: dropRatio) { n, l in
            let d = draws[k]
            guard d.shape == [n, l] else {
                throw TorchError("ReferenceAttentionControl.update: draw \(k) has shape \(d.shape), expected [\(n), \(l)]")
            }
            k += 1
            return d
        }
    }

    private func update(dropRatio: Double, draw: (Int, Int) throws -> Tensor) throws {
        guard dropRatio >= 0, dropRatio < 1 else {
            throw TorchError("ReferenceAttentionControl.update: drop ratio must be in [0, 1), got \(dropRatio)")
        }
        var banks: [[Tensor]] = []
        for recordings in writerBanks {
            banks.append(try recordings.map { v in
                guard dropRatio > 0 else { return try store(v) }
                let (n, l, d) = (v.shape[0], v.shape[1], v.shape[2])
                // Python's int(): truncation of the float product.
                let keep = Int(Double(l) * (1 - dropRatio))
                let order = try draw(n, l).argsort(dim: 1)
                let ids = try order.narrow(1, start: 0, length: keep).to(v.device)
                return try store(v.gather(1, ids.unsqueeze(-1).expand([n, keep, d])))
            })
        }
        readerBanks = banks
    }

    /// `reader.update_hkf(writer)`: appends the writer's current recordings (normally one
    /// reference-UNet pass on the keyframe) as keyframes. Returns false, changing nothing, when
    /// that would exceed `maxKeyframes`.
    @discardableResult
    public func updateKeyframe() throws -> Bool {
        let recordings = writerBanks.first?.count ?? 0
        guard recordings > 0 else {
            throw TorchError("ReferenceAttentionControl.updateKeyframe: the writer has recorded nothing; "
                             + "run the reference UNet on the keyframe first")
        }
        guard keyframeCount + recordings <= maxKeyframes else { return false }
        keyframeBanks = try zip(writerBanks, keyframeBanks).map { recs, existing in
            let new = try Tensor.cat(recs.map { try store($0).unsqueeze(1) }, dim: 1)
            return try existing.map { try Tensor.cat([$0, new], dim: 1) } ?? new
        }
        return true
    }

    private func store(_ t: Tensor) throws -> Tensor {
        roundBankToFP16 && t.dtype != .float16 ? try t.to(.float16) : t
    }

    // MARK: read mode

    /// The extra key/value tokens of reader block j for (b·f, L, C) frame tokens, per sample: every
    /// reference recording, then all keyframes of the sample ('b (n l) c'), (b, L', C). The reader
    /// block gives them to each of the sample's f frames (the reference's 'b t l c -> (b t) l c'
    /// repeat, done after the key/value projections). nil when there are none (plain self-attention).
    private func extraTokens(_ j: Int, normed: Tensor, videoLength f: Int) throws -> Tensor? {
        let bf = normed.shape[0]
        guard f > 0, bf % f == 0 else {
            throw TorchError("ReferenceAttentionControl: \(bf) token rows are not a multiple of \(f) frames")
        }
        let b = bf / f
        func aligned(_ t: Tensor) throws -> Tensor {
            guard t.shape[0] == b else {
                throw TorchError("ReferenceAttentionControl: \(pairs[j].reader): reference batch \(t.shape[0]) "
                                 + "differs from the denoiser batch \(b)")
            }
            // The reference relies on torch.cat's promotion back to the hidden dtype.
            return t.dtype == normed.dtype && t.device == normed.device ? t : try t.to(normed.device, normed.dtype)
        }
        var parts = try readerBanks[j].map(aligned)
        if let kv = keyframeBanks[j] {
            let t = try aligned(kv)
            parts.append(try t.reshape([b, t.shape[1] * t.shape[2], t.shape[3]]))
        }
        if parts.isEmpty { return nil }
        return parts.count == 1 ? parts[0] : try Tensor.cat(parts, dim: 1)
    }
}
