// SyntheticTests.swift — `dataset synth`: same seed → same bytes, and the stored ground truth agrees
// with the pixels (PoseGuider keypoints inside the face box and on skin, boxes nested, pose in range).
import Foundation
import Testing
@testable import Data
@testable import Media

@Suite("Synthetic portraits")
struct SyntheticTests {
    @Test func sameSeedGivesSameBytes() throws {
        let dir = TestSupport.TempDir()
        let config = SynthConfig(clips: 3, frames: 6, size: 48, seed: 7)
        let g1 = try SyntheticPortraits.write(to: dir.file("a.h5"), config: config)
        let g2 = try SyntheticPortraits.write(to: dir.file("b.h5"), config: config)
        let bytes = { (p: String) in try Data(contentsOf: URL(fileURLWithPath: p)) }
        #expect(try bytes(dir.file("a.h5")) == bytes(dir.file("b.h5")))
        #expect(try bytes(g1) == bytes(g2))
        #expect(g1 == dir.file("a_grid.png"))
        let grid = try ImageIO.read(g1)
        #expect(grid.width == 6 * 50 + 2 && grid.height == 3 * 50 + 2)
        #expect(FileManager.default.fileExists(atPath: dir.file("a_grid_gt.png")))

        var other = config
        other.seed = 8
        try SyntheticPortraits.write(to: dir.file("c.h5"), config: other)
        let r1 = try DatasetReader(path: dir.file("a.h5")), r3 = try DatasetReader(path: dir.file("c.h5"))
        #expect(try r1.allFrames("synth_00000") != r3.allFrames("synth_00000"))
        #expect(r1.splits == ["train": ["synth_00000", "synth_00001"], "val": ["synth_00002"]])
        let info = try r1.info("synth_00001")
        #expect(info.frameCount == 6 && info.width == 48 && info.fps == 25 && info.hasPose && info.hasKeypoints)
    }

    @Test func clipsDependOnlyOnSeedAndIndex() {
        let small = SynthConfig(clips: 2, frames: 3, size: 32, seed: 11)
        let big = SynthConfig(clips: 50, frames: 3, size: 32, seed: 11)
        #expect(SyntheticPortraits.clip(1, config: small).frames == SyntheticPortraits.clip(1, config: big).frames)
        #expect(SyntheticPortraits.clip(0, config: small).frames != SyntheticPortraits.clip(1, config: small).frames)
    }

    @Test(arguments: zip([1.0, 1.5, 1.5], [1.0, 1.0, 1.5]))
    func groundTruthMatchesThePixels(poseScale: Double, zoom: Double) throws {
        let size = 96
        let config = SynthConfig(clips: 6, frames: 10, size: size, seed: 3, fps: 5, poseScale: poseScale, zoom: zoom)
        let limit = 30 * poseScale
        var checked = 0, largest = 0.0
        for c in 0..<config.clips {
            let clip = SyntheticPortraits.clip(c, config: config)
            var rng = SeededRandom(seed: config.seed, 1, UInt64(c))
            let identity = SyntheticPortraits.makeIdentity(&rng)
            for t in 0..<clip.frameCount {
                let pose = HeadPose(row: clip.pose![(t * 7)..<(t * 7 + 7)])
                #expect(abs(pose.pitch) <= limit && abs(pose.yaw) <= limit && abs(pose.roll) <= limit)
                largest = max(largest, abs(pose.pitch), abs(pose.yaw), abs(pose.roll))
                #expect(pose.tz == 0)
                let boxes = FaceBoxes(flat: clip.boxes[(t * 16)..<(t * 16 + 16)])
                for inner in [boxes.leftEye, boxes.rightEye, boxes.mouth] {
                    #expect(boxes.face.contains(x: inner.centerX, y: inner.centerY), "clip \(c) frame \(t): \(inner) outside \(boxes.face)")
                    #expect(inner.width > 0 && inner.height > 0)
                }
                let k = pose.transform(clip.keypoints![(t * 63)..<(t * 63 + 63)].map { Double($0) })
                let frame = try clip.frame(t)
                for i in HeadPose.drawnKeypoints {
                    let (px, py) = HeadPose.pixel(x: k[i * 3], y: k[i * 3 + 1], width: size, height: size)
                    #expect(boxes.face.contains(x: Float(px), y: Float(py)), "clip \(c) frame \(t) keypoint \(i) at (\(px),\(py)) outside \(boxes.face)")
                }
                // The nose bridge (19) and the cheek turned towards the camera sit on skin: the pixel
                // has the identity's skin hue (per-channel ratios to the skin colour agree).
                let cheek = pose.yaw > 0 ? 14 : 16
                for i in [19, cheek] {
                    let (px, py) = HeadPose.pixel(x: k[i * 3], y: k[i * 3 + 1], width: size, height: size)
                    let p = frame.pixel(x: px, y: py)
                    let ratios = [Double(p.0) / 255 / identity.skin.0, Double(p.1) / 255 / identity.skin.1, Double(p.2) / 255 / identity.skin.2]
                    let spread = ratios.max()! / max(ratios.min()!, 1e-3)
                    #expect(spread < 1.35 && ratios.min()! > 0.3, "clip \(c) frame \(t) keypoint \(i): pixel \(p) vs skin \(identity.skin)")
                    checked += 1
                }
            }
        }
        #expect(checked == 6 * 10 * 2)
        // The head turns well beyond the smaller scale's range.
        #expect(largest > 0.6 * limit, "largest angle \(largest)° with pose scale \(poseScale)")
    }

    /// --zoom scales the head (and its ground truth) in the frame.
    @Test func zoomScalesTheHead() throws {
        func meanFaceWidth(_ zoom: Double) -> Double {
            let clip = SyntheticPortraits.clip(0, config: SynthConfig(clips: 1, frames: 8, seed: 5, zoom: zoom))
            let widths = (0..<clip.frameCount).map { Double(FaceBoxes(flat: clip.boxes[($0 * 16)..<($0 * 16 + 16)]).face.width) }
            return widths.reduce(0, +) / Double(widths.count)
        }
        let ratio = meanFaceWidth(1.5) / meanFaceWidth(1)
        #expect(ratio > 1.35 && ratio < 1.65, "face box width ratio \(ratio) at zoom 1.5")
        #expect(throws: SynthError.self) { try SynthConfig(zoom: 0.3).validate() }
        #expect(throws: SynthError.self) { try SynthConfig(zoom: 2.5).validate() }
    }

    @Test func rotationFollowsLivePortraitConvention() {
        // Pure yaw of 90°: R = Ry(90°)ᵀ maps the canonical x axis (row vector) onto +z... k = k_c·R.
        let p = HeadPose(pitch: 0, yaw: 90, roll: 0, tx: 0.1, ty: -0.2, scale: 2)
        let k = p.transform([1, 0, 0, 0, 0, 1])
        // Ry(90) = [[0,0,1],[0,1,0],[-1,0,0]]; its transpose's first row is [0,0,-1].
        #expect(abs(k[0] - 0.1) < 1e-12 && abs(k[1] + 0.2) < 1e-12 && abs(k[2] + 2) < 1e-12)
        #expect(abs(k[3] - 2.1) < 1e-12 && abs(k[4] + 0.2) < 1e-12 && abs(k[5]) < 1e-12)
        // Roll then pitch compose as (Rz·Ry·Rx)ᵀ.
        let q = HeadPose(pitch: 30, yaw: 0, roll: 90, tx: 0, ty: 0, scale: 1)
        let r = q.rotation
        // Rz(90)·Rx(30) = [[0,-c,s],[1,0,0],[0,s,c]] with c = cos 30°, s = sin 30°; R is its transpose.
        let c = cos(Double.pi / 6), s = sin(Double.pi / 6)
        let expected: [Double] = [0, 1, 0, -c, 0, s, s, 0, c]
        #expect(zip(r, expected).allSatisfy { abs($0 - $1) < 1e-12 })
        #expect(HeadPose.pixel(x: -0.999, y: 0.5, width: 512, height: 256) == (0, 192))
    }

    @Test func badConfigsAreRejected() {
        #expect(throws: SynthError.self) { try SynthConfig(clips: 0).validate() }
        #expect(throws: SynthError.self) { try SynthConfig(size: 8).validate() }
        #expect(throws: SynthError.self) { try SynthConfig(poseScale: 0).validate() }
        #expect(throws: SynthError.self) { try SynthConfig(poseScale: 2.5).validate() }
        #expect(SynthConfig(clips: 1).splits.val.isEmpty)
        #expect(SynthConfig(clips: 64).splits.val.count == 6)
    }
}
