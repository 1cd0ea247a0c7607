// SyntheticPortraits.swift — `personalive dataset synth`: procedurally generated talking portraits,
// deterministic from a seed (same seed → same bytes). One identity per clip (skin, hair, ears, eyes,
// clothes, background); the head follows a smooth random trajectory in pitch/yaw/roll (±30° × pose scale),
// translation and scale; eyes blink and look around, brows move, the mouth talks and smiles. Each
// frame stores its boxes, pose and the 21 canonical keypoints whose transform k = s·(k_c·R) + t
// lands on the rendered face (PortraitRenderer uses the same transform).
import Foundation
import Logging
import Media

public struct SynthConfig: Sendable {
    public var clips: Int
    public var frames: Int
    public var size: Int
    public var seed: UInt64
    public var fps: Double
    /// Fraction of clips (the last ones) in the validation split; at least one when there are ≥ 2 clips.
    public var valFraction: Double
    /// Head-motion amplitude: 1 turns the head within ±30° and shifts it by up to 5 % of the frame;
    /// the angle and shift ranges scale with it (the identities and timing stay the same).
    public var poseScale: Double
    /// Camera framing: the head's size in the frame (and its keypoint scale) × zoom; 1 frames head
    /// and shoulders (the head ≈ 40 % of the frame's width), larger values come closer.
    public var zoom: Double

    public init(clips: Int = 64, frames: Int = 48, size: Int = 64, seed: UInt64 = 0, fps: Double = 25, valFraction: Double = 0.1,
                poseScale: Double = 1, zoom: Double = 1) {
        self.clips = clips; self.frames = frames; self.size = size; self.seed = seed; self.fps = fps; self.valFraction = valFraction
        self.poseScale = poseScale; self.zoom = zoom
    }

    public func validate() throws {
        guard clips >= 1, frames >= 1 else { throw SynthError("need at least one clip and one frame, got \(clips) clips × \(frames) frames") }
        guard size >= 16, size <= 2048 else { throw SynthError("size must be in 16...2048, got \(size)") }
        guard fps > 0 else { throw SynthError("fps must be positive, got \(fps)") }
        guard (0...1).contains(valFraction) else { throw SynthError("val fraction must be in 0...1, got \(valFraction)") }
        guard poseScale > 0, poseScale <= 2 else { throw SynthError("pose scale must be in (0, 2] (±60° at most), got \(poseScale)") }
        guard zoom >= 0.5, zoom <= 2 else { throw SynthError("zoom must be in 0.5...2, got \(zoom)") }
    }

    /// Clip ids in order.
    public var clipIDs: [String] { (0..<clips).map { String(format: "synth_%05d", $0) } }

    /// (train, val) ids.
    public var splits: (train: [String], val: [String]) {
        let ids = clipIDs
        let nVal = clips < 2 ? 0 : max(1, Int((Double(clips) * valFraction).rounded()))
        return (Array(ids.dropLast(min(nVal, clips - 1))), Array(ids.suffix(min(nVal, clips - 1))))
    }
}

public struct SynthError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

public enum SyntheticPortraits {
    /// Generates clip `index` (pure function of the config's seed and the index).
    public static func clip(_ index: Int, config: SynthConfig) -> ClipData {
        let id = config.clipIDs[index]
        var rng = SeededRandom(seed: config.seed, 1, UInt64(index))
        let identity = makeIdentity(&rng)
        let motion = Motion(&rng, poseScale: config.poseScale, zoom: config.zoom)
        let renderer = PortraitRenderer(identity: identity, size: config.size)
        let n = config.size * config.size * 3
        var frames = [UInt8](repeating: 0, count: n * config.frames)
        var boxes: [Float] = [], pose: [Float] = [], kps: [Float] = []
        boxes.reserveCapacity(config.frames * 16)
        for t in 0..<config.frames {
            let state = motion.state(at: Double(t) / config.fps)
            renderer.render(state, into: &frames, at: t * n)
            let canonical = PortraitGeometry.canonicalKeypoints(identity, state)
            kps += canonical.map { Float($0) }
            pose += state.pose.row
            boxes += groundTruthBoxes(identity, state, size: config.size).flat
        }
        return ClipData(id: id, width: config.size, height: config.size, fps: config.fps, source: "synthetic:seed=\(config.seed):clip=\(index)",
                        frames: frames, boxes: boxes, pose: pose, keypoints: kps, boxesSource: BoxesSource.synthetic.rawValue)
    }

    /// Face (outline), eye and mouth boxes in pixels from the projected canonical outlines, clamped
    /// to the image. The face box also takes in the whole pixels of the 21 keypoints, which can
    /// poke out of the outline (nose tip, chin) at large turns.
    static func groundTruthBoxes(_ id: PortraitIdentity, _ st: PortraitState, size: Int) -> FaceBoxes {
        func box(_ canonical: [Double], wholePixels extra: [Double] = []) -> Box {
            var x1 = Double.infinity, y1 = Double.infinity, x2 = -Double.infinity, y2 = -Double.infinity
            for (points, whole) in [(canonical, false), (extra, true)] {
                let k = st.pose.transform(points)
                for i in 0..<(k.count / 3) {
                    let px = (k[i * 3] * 0.5 + 0.5) * Double(size), py = (k[i * 3 + 1] * 0.5 + 0.5) * Double(size)
                    x1 = min(x1, whole ? px.rounded(.down) : px); y1 = min(y1, whole ? py.rounded(.down) : py)
                    x2 = max(x2, whole ? px.rounded(.up) : px); y2 = max(y2, whole ? py.rounded(.up) : py)
                }
            }
            return Box(x1: Float(x1), y1: Float(y1), x2: Float(x2), y2: Float(y2))
        }
        let s = Float(size)
        let face = box(PortraitGeometry.faceOutline(id), wholePixels: PortraitGeometry.canonicalKeypoints(id, st))
        return FaceBoxes(face: face, leftEye: box(PortraitGeometry.featureOutline(id, st, side: -1)),
                         rightEye: box(PortraitGeometry.featureOutline(id, st, side: 1)), mouth: box(PortraitGeometry.featureOutline(id, st, side: 0)))
            .clamped(width: s, height: s)
    }

    /// Writes a whole synthetic dataset (clips rendered in parallel, written in order) and returns
    /// the path of the frame-grid PNG saved next to it (plus `<grid>_gt.png` with the ground truth drawn).
    @discardableResult
    public static func write(to path: String, config: SynthConfig, gridPath: String? = nil,
                             logger: Logger = Logger(label: "personalive.data"),
                             progress: ((Int, Int) -> Void)? = nil) throws -> String {
        try config.validate()
        let writer = try DatasetWriter(path: path, logger: logger)
        // Render a batch of clips in parallel, then write them in order (bounded memory).
        let batch = max(2, ProcessInfo.processInfo.activeProcessorCount * 2)
        var gridClips: [ClipData] = []
        let gridRows = min(config.clips, 8)
        var start = 0
        while start < config.clips {
            let end = min(config.clips, start + batch)
            let results = UnsafeMutableBufferPointer<ClipData?>.allocate(capacity: end - start)
            results.initialize(repeating: nil)
            defer { results.deinitialize(); results.deallocate() }
            DispatchQueue.concurrentPerform(iterations: end - start) { i in
                results[i] = clip(start + i, config: config)
            }
            for i in 0..<(end - start) {
                let c = results[i]!
                try writer.addClip(c)
                if start + i < gridRows { gridClips.append(c) }
                progress?(start + i + 1, config.clips)
            }
            start = end
        }
        let (train, val) = config.splits
        try writer.finish(train: train, val: val)
        let grid = gridPath ?? defaultGridPath(for: path)
        try ImageIO.write(try frameGrid(gridClips, columns: min(config.frames, 8)), to: grid)
        let gtGrid = URL(fileURLWithPath: grid).deletingPathExtension().path + "_gt.png"
        try ImageIO.write(try frameGrid(gridClips, columns: min(config.frames, 8), overlay: true), to: gtGrid)
        logger.info("synthesised \(config.clips) clips × \(config.frames) frames at \(config.size)² into \(path); grid \(grid)")
        return grid
    }

    public static func defaultGridPath(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingPathExtension().path + "_grid.png"
    }

    /// Rows = clips, columns = frames evenly spread over each clip, with a 2-pixel gutter. With
    /// `overlay`, each frame shows its stored ground truth: face box (white), eye and mouth boxes
    /// (yellow) and the seven PoseGuider keypoints in their PoseGuider colours.
    public static func frameGrid(_ clips: [ClipData], columns: Int, overlay: Bool = false) throws -> RGBImage {
        guard let first = clips.first else { throw SynthError("no clips for the grid") }
        let w = first.width, h = first.height, gap = 2
        var grid = RGBImage(width: columns * (w + gap) + gap, height: clips.count * (h + gap) + gap, fill: (255, 255, 255))
        for (r, c) in clips.enumerated() {
            for col in 0..<columns {
                let t = columns == 1 ? 0 : col * (c.frameCount - 1) / (columns - 1)
                var f = try c.frame(t)
                if overlay { drawGroundTruth(&f, c, t) }
                for y in 0..<h {
                    let dst = ((gap + r * (h + gap) + y) * grid.width + gap + col * (w + gap)) * 3
                    let src = y * w * 3
                    for i in 0..<(w * 3) { grid.pixels[dst + i] = f.pixels[src + i] }
                }
            }
        }
        return grid
    }

    /// PoseGuider keypoint colours (src/utils/util.py draw_keypoints), in `HeadPose.drawnKeypoints` order.
    static let keypointColours: [(UInt8, UInt8, UInt8)] = [(255, 0, 0), (255, 255, 0), (0, 255, 0), (0, 255, 255), (0, 0, 255), (255, 0, 255), (255, 0, 85)]

    static func drawGroundTruth(_ img: inout RGBImage, _ c: ClipData, _ t: Int) {
        func put(_ x: Int, _ y: Int, _ col: (UInt8, UInt8, UInt8)) {
            guard x >= 0, y >= 0, x < img.width, y < img.height else { return }
            let o = (y * img.width + x) * 3
            img.pixels[o] = col.0; img.pixels[o + 1] = col.1; img.pixels[o + 2] = col.2
        }
        func rect(_ b: Box, _ col: (UInt8, UInt8, UInt8)) {
            let x1 = Int(b.x1), y1 = Int(b.y1), x2 = min(Int(b.x2), img.width - 1), y2 = min(Int(b.y2), img.height - 1)
            guard x2 >= x1, y2 >= y1 else { return }
            for x in x1...x2 { put(x, y1, col); put(x, y2, col) }
            for y in y1...y2 { put(x1, y, col); put(x2, y, col) }
        }
        let b = FaceBoxes(flat: c.boxes[(t * 16)..<(t * 16 + 16)])
        rect(b.face, (255, 255, 255))
        for e in [b.leftEye, b.rightEye, b.mouth] { rect(e, (255, 230, 0)) }
        guard let kps = c.keypoints, let pose = c.pose else { return }
        let p = HeadPose(row: pose[(t * 7)..<(t * 7 + 7)])
        let k = p.transform(kps[(t * 63)..<(t * 63 + 63)].map { Double($0) })
        let radius = max(1, img.width / 128)
        for (n, i) in HeadPose.drawnKeypoints.enumerated() {
            let (px, py) = HeadPose.pixel(x: k[i * 3], y: k[i * 3 + 1], width: img.width, height: img.height)
            for dy in -radius...radius { for dx in -radius...radius where dx * dx + dy * dy <= radius * radius {
                put(px + dx, py + dy, keypointColours[n])
            } }
        }
    }

    // MARK: - Identity and motion

    static let skinTones: [(Double, Double, Double)] = [
        (0.98, 0.84, 0.73), (0.94, 0.76, 0.62), (0.87, 0.67, 0.52), (0.76, 0.55, 0.40),
        (0.62, 0.43, 0.30), (0.48, 0.32, 0.22), (0.36, 0.24, 0.17), (0.90, 0.74, 0.66),
    ]
    static let hairColours: [(Double, Double, Double)] = [
        (0.08, 0.06, 0.05), (0.25, 0.16, 0.09), (0.45, 0.30, 0.16), (0.75, 0.60, 0.35),
        (0.55, 0.22, 0.10), (0.55, 0.55, 0.55), (0.90, 0.88, 0.82), (0.15, 0.12, 0.20),
    ]
    static let irisColours: [(Double, Double, Double)] = [
        (0.30, 0.18, 0.08), (0.15, 0.35, 0.60), (0.25, 0.45, 0.25), (0.12, 0.08, 0.05), (0.45, 0.40, 0.30),
    ]

    static func makeIdentity(_ g: inout SeededRandom) -> PortraitIdentity {
        func jitter(_ c: (Double, Double, Double), _ a: Double) -> (Double, Double, Double) {
            (min(1, max(0, c.0 + g.uniform(-a, a))), min(1, max(0, c.1 + g.uniform(-a, a))), min(1, max(0, c.2 + g.uniform(-a, a))))
        }
        func colour() -> (Double, Double, Double) { (g.uniform(0.05, 0.95), g.uniform(0.05, 0.95), g.uniform(0.05, 0.95)) }
        let rx = 0.42 * g.uniform(0.9, 1.08), ry = 0.55 * g.uniform(0.93, 1.07), rz = 0.46 * g.uniform(0.95, 1.05)
        let skin = jitter(skinTones[g.below(skinTones.count)], 0.04)
        let clothes = colour()
        let lightX = g.uniform(-0.6, 0.6), lightY = g.uniform(-0.7, -0.1)
        let ln = (lightX * lightX + lightY * lightY + 1).squareRoot()
        let bgKind = g.below(3)
        var blobs: [(Double, Double, Double, Int)] = []
        for _ in 0..<6 { blobs.append((g.uniform(0, 1), g.uniform(0, 1), g.uniform(0.08, 0.3), g.below(3))) }
        return PortraitIdentity(
            headRadii: (rx, ry, rz), skin: skin, hair: jitter(hairColours[g.below(hairColours.count)], 0.04),
            hairStyle: g.below(3), hairline: -0.3 + g.uniform(-0.06, 0.06), iris: irisColours[g.below(irisColours.count)],
            lips: (min(1, skin.0 * 0.85 + 0.12), skin.1 * 0.55, skin.2 * 0.6), clothes: clothes,
            collar: g.unit() < 0.5 ? (0.95, 0.95, 0.95) : (clothes.0 * 0.6, clothes.1 * 0.6, clothes.2 * 0.6),
            eyeX: 0.15 * g.uniform(0.92, 1.1), eyeY: -0.05 + g.uniform(-0.02, 0.02), eyeW: 0.072 * g.uniform(0.9, 1.15),
            eyeH: 0.036 * g.uniform(0.85, 1.2), browY: -0.13 + g.uniform(-0.02, 0.01), browThickness: 0.014 * g.uniform(0.8, 1.5),
            mouthY: 0.29 + g.uniform(-0.02, 0.03), mouthW: 0.12 * g.uniform(0.85, 1.15), noseLength: 0.1 * g.uniform(0.8, 1.25),
            light: (lightX / ln, lightY / ln, -1 / ln), background: [colour(), colour(), colour()], backgroundKind: bgKind,
            blobs: blobs, stripeAngle: g.uniform(0, .pi), stripePeriod: g.uniform(0.08, 0.3))
    }

    /// Smooth random trajectories (sums of sinusoids) for pose and expression.
    struct Motion {
        struct Wave {
            var amp: (Double, Double), freq: (Double, Double), phase: (Double, Double), bias: Double
            init(_ g: inout SeededRandom, amp: Double, bias: Double, slow: Double = 0.08, fast: Double = 0.6) {
                self.amp = (amp * g.uniform(0.4, 1), amp * g.uniform(0.1, 0.5))
                self.freq = (g.uniform(slow, slow * 3), g.uniform(fast * 0.4, fast))
                self.phase = (g.uniform(0, 2 * .pi), g.uniform(0, 2 * .pi))
                self.bias = g.uniform(-bias, bias)
            }
            func at(_ t: Double) -> Double {
                bias + amp.0 * sin(2 * .pi * freq.0 * t + phase.0) + amp.1 * sin(2 * .pi * freq.1 * t + phase.1)
            }
        }
        var pitch, yaw, roll, tx, ty, scale, gazeX, gazeY, smile, brow: Wave
        var talk: (Double, Double, Double)
        var talkPhase: Double
        var baseScale: Double
        let zoom: Double
        var blinkPeriod: Double, blinkPhase: Double
        /// Angle limit (degrees) and translation limits, scaled by the pose scale.
        let angleLimit: Double, txLimit: Double, tyLimit: Double

        init(_ g: inout SeededRandom, poseScale p: Double = 1, zoom: Double = 1) {
            pitch = Wave(&g, amp: 18 * p, bias: 6 * p)
            yaw = Wave(&g, amp: 26 * p, bias: 8 * p)
            roll = Wave(&g, amp: 12 * p, bias: 5 * p)
            tx = Wave(&g, amp: 0.05 * p, bias: 0.05 * p)
            ty = Wave(&g, amp: 0.04 * p, bias: 0.03 * p)
            (angleLimit, txLimit, tyLimit) = (30 * p, 0.1 * p, 0.08 * p)
            scale = Wave(&g, amp: 0.05, bias: 0)
            gazeX = Wave(&g, amp: 0.8, bias: 0.2, slow: 0.15, fast: 1.2)
            gazeY = Wave(&g, amp: 0.6, bias: 0.1, slow: 0.15, fast: 1.0)
            smile = Wave(&g, amp: 0.7, bias: 0.2, slow: 0.05, fast: 0.3)
            brow = Wave(&g, amp: 0.6, bias: 0.1, slow: 0.1, fast: 0.7)
            talk = (g.uniform(2.5, 4.5), g.uniform(0.8, 1.6), g.uniform(0.1, 0.3))
            talkPhase = g.uniform(0, 2 * .pi)
            baseScale = g.uniform(0.9, 1.05)
            self.zoom = zoom
            blinkPeriod = g.uniform(1.8, 4.0)
            blinkPhase = g.uniform(0, 1)
        }

        /// Squashes into (−limit, limit) smoothly, so trajectories stay within range without kinks.
        static func soft(_ v: Double, _ limit: Double) -> Double { limit * tanh(v / limit) }

        func state(at t: Double) -> PortraitState {
            let pose = HeadPose(pitch: Motion.soft(pitch.at(t), angleLimit), yaw: Motion.soft(yaw.at(t), angleLimit),
                                roll: Motion.soft(roll.at(t), angleLimit),
                                tx: Motion.soft(tx.at(t), txLimit), ty: Motion.soft(ty.at(t), tyLimit), tz: 0,
                                scale: (baseScale + Motion.soft(scale.at(t), 0.06)) * zoom)
            // Blink: a short dip once per period.
            let cyc = (t / blinkPeriod + blinkPhase).truncatingRemainder(dividingBy: 1)
            let blinkLen = 0.2 / blinkPeriod
            let eye = cyc < blinkLen ? abs(cos(.pi * cyc / blinkLen)) : 1
            // Talking: syllables modulated by phrases, with pauses.
            let syll = max(0, sin(2 * .pi * talk.0 * t + talkPhase))
            let phrase = max(0, sin(2 * .pi * talk.2 * t + talkPhase * 0.7) + 0.3)
            let open = min(1, syll * phrase * (0.6 + 0.4 * sin(2 * .pi * talk.1 * t)))
            return PortraitState(pose: pose, eyeOpen: eye, gazeX: Motion.soft(gazeX.at(t), 1), gazeY: Motion.soft(gazeY.at(t), 1),
                                 mouthOpen: max(0, open), smile: min(1, max(0, smile.at(t))), browRaise: min(1, max(0, brow.at(t))))
        }
    }
}
