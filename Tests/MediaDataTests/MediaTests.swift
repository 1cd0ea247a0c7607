// MediaTests.swift — VideoReader/VideoWriter round trips, audio copy, real-media decoding and
// resampling, bad-input errors, PNG/JPEG files and resizing.
import Foundation
import Testing
@testable import Media

@Suite("Media")
struct MediaTests {
    @Test func videoRoundTripKeepsEveryFrame() throws {
        let dir = TestSupport.TempDir()
        let out = dir.file("clip.mp4")
        let frames = (0..<50).map { TestSupport.pattern(width: 160, height: 120, t: $0) }
        let w = try VideoWriter(path: out, width: 160, height: 120, options: .init(fps: 25, crf: 18))
        for f in frames { try w.write(f) }
        try w.finish()
        #expect(dir.contents() == ["clip.mp4"])

        let r = try VideoReader(path: out)
        #expect(r.width == 160 && r.height == 120)
        #expect(abs(r.fps - 25) < 1e-9)
        #expect(try r.frameCount() == 50)
        let back = try r.readAll()
        #expect(back.count == 50)
        let err = zip(frames, back).map { TestSupport.meanAbsError($0, $1) }.reduce(0, +) / 50
        #expect(err < 4, "mean abs error \(err)")
    }

    @Test func mpeg4FallbackCodecRoundTrips() throws {
        let dir = TestSupport.TempDir()
        let out = dir.file("clip.mp4")
        let w = try VideoWriter(path: out, width: 64, height: 48, options: .init(fps: 30, codec: .mpeg4))
        #expect(w.codecName == "mpeg4")
        for t in 0..<31 { try w.write(TestSupport.pattern(width: 64, height: 48, t: t)) }
        try w.finish()
        let r = try VideoReader(path: out)
        #expect(r.codec == "mpeg4")
        #expect(try r.readAll().count == 31)
        #expect(abs(r.fps - 30) < 1e-9)
    }

    @Test func seekLandsOnTheRequestedFrame() throws {
        let dir = TestSupport.TempDir()
        let out = dir.file("seek.mp4")
        let w = try VideoWriter(path: out, width: 96, height: 64)
        for t in 0..<60 { try w.write(TestSupport.pattern(width: 96, height: 64, t: t)) }
        try w.finish()
        let all = try VideoReader(path: out).readAll()
        let r = try VideoReader(path: out)
        for index in [37, 5, 0, 59] {
            try r.seek(toFrame: index)
            let f = try #require(try r.nextFrame())
            #expect(f == all[index], "frame \(index)")
        }
        #expect(throws: MediaError.self) { try r.seek(toFrame: 60) }
    }

    @Test func resamplingChangesTheFrameRate() throws {
        let dir = TestSupport.TempDir()
        let out = dir.file("thirty.mp4")
        let w = try VideoWriter(path: out, width: 64, height: 64, options: .init(fps: 30))
        for t in 0..<90 { try w.write(TestSupport.pattern(width: 64, height: 64, t: t)) }
        try w.finish()
        let r = try VideoReader(path: out)
        #expect(try r.resampledFrameCount(fps: 25) == 75)
        let src = try VideoReader(path: out).readAll()
        let down = try r.readAll(fps: 25)
        #expect(down.count == 75)
        // Output tick n at n/25 s shows source frame floor(n·30/25).
        for n in [0, 1, 7, 40, 74] { #expect(down[n] == src[n * 30 / 25], "tick \(n)") }
        let up = try VideoReader(path: out).readAll(fps: 60)
        #expect(up.count == 180)
        #expect(up[3] == src[1])
    }

    @Test func audioIsCopiedAndCutToTheVideo() throws {
        let media = try #require(TestSupport.mediaDir, "shared media folder not found")
        let source = media + "/liveportrait/d11.mp4"
        let dir = TestSupport.TempDir()
        let out = dir.file("with_audio.mp4")
        let w = try VideoWriter(path: out, width: 64, height: 64, options: .init(fps: 25, audioFrom: source))
        #expect(w.hasAudio)
        for t in 0..<50 { try w.write(TestSupport.pattern(width: 64, height: 64, t: t)) }
        try w.finish()
        let r = try VideoReader(path: out)
        #expect(r.hasAudio)
        #expect(r.audioCodec == "aac")
        #expect(try r.frameCount() == 50)
        // Two seconds of video keep about two seconds of the source's sound (AAC frames are ~21 ms).
        #expect(abs(r.audioDuration - 2.0) < 0.1, "audio \(r.audioDuration) s")
    }

    @Test func realDrivingVideosDecodeWithExactCounts() throws {
        let media = try #require(TestSupport.mediaDir, "shared media folder not found")
        let d0 = try VideoReader(path: media + "/liveportrait/d0.mp4")
        #expect(d0.width == 512 && d0.height == 512)
        #expect(try d0.frameCount() == 78)
        var n = 0
        try d0.forEachFrame { _, f in
            #expect(f.width == 512)
            n += 1
            return true
        }
        #expect(n == 78)

        // An edit list hides the first 4.4 s (110 frames) of the demo video: 1531 frames are shown,
        // as `ffmpeg -f framemd5` counts them.
        let demo = try VideoReader(path: media + "/personalive-demo/driving_video.mp4")
        #expect(demo.fps == 25)
        #expect(try demo.frameCount() == 1531)
        var shown = 0
        try demo.forEachFrame { _, _ in shown += 1; return true }
        #expect(shown == 1531)

        let d3 = try VideoReader(path: media + "/liveportrait/d3.mp4")
        #expect(d3.hasAudio)
        #expect(abs(d3.fps - 30) < 0.01)
        let expected = Double(try d3.frameCount()) / d3.fps * 25
        var m = 0
        try d3.forEachFrame(fps: 25) { _, _ in m += 1; return true }
        #expect(abs(Double(m) - expected) <= 1, "\(m) frames at 25 fps, expected \(expected)")
    }

    @Test func realVideoRoundTripKeepsFramesAndAudio() throws {
        let media = try #require(TestSupport.mediaDir, "shared media folder not found")
        let source = media + "/liveportrait/d18.mp4"
        let r = try VideoReader(path: source)
        let frames = try r.readAll(maxFrames: 40)
        let dir = TestSupport.TempDir()
        let out = dir.file("d18_copy.mp4")
        let w = try VideoWriter(path: out, width: r.width, height: r.height, options: .init(fps: r.fps, crf: 18, preset: "veryfast", audioFrom: source))
        for f in frames { try w.write(f) }
        try w.finish()
        let back = try VideoReader(path: out)
        #expect(back.hasAudio)
        #expect(try back.frameCount() == 40)
        let decoded = try back.readAll()
        #expect(decoded.count == 40)
        let err = zip(frames, decoded).map { TestSupport.meanAbsError($0, $1) }.reduce(0, +) / 40
        #expect(err < 4, "mean abs error \(err)")
    }

    @Test func badInputsNameTheFileAndReason() throws {
        let dir = TestSupport.TempDir()
        let missing = dir.file("nope.mp4")
        let e1 = #expect(throws: MediaError.self) { try VideoReader(path: missing) }
        #expect(e1?.description.contains(missing) == true)
        #expect(e1?.description.contains("no such file") == true)

        let text = dir.file("notes.mp4")
        try "not a video at all".write(toFile: text, atomically: true, encoding: .utf8)
        let e2 = #expect(throws: MediaError.self) { try VideoReader(path: text) }
        #expect(e2?.description.contains(text) == true)
        #expect(e2?.description.contains("Invalid data") == true, "\(e2?.description ?? "")")

        if let media = TestSupport.mediaDir {
            // A truncated mp4 (the index is at the end of this file) cannot be opened.
            let bytes = try Data(contentsOf: URL(fileURLWithPath: media + "/liveportrait/d0.mp4"))
            let cut = dir.file("cut.mp4")
            try bytes.prefix(200_000).write(to: URL(fileURLWithPath: cut))
            let e3 = #expect(throws: MediaError.self) {
                let r = try VideoReader(path: cut)
                _ = try r.readAll()
            }
            #expect(e3?.description.contains(cut) == true)
        }
    }

    @Test func failedWriterLeavesNoFile() throws {
        let dir = TestSupport.TempDir()
        let out = dir.file("broken.mp4")
        let notMedia = dir.file("sound.txt")
        try "hello".write(toFile: notMedia, atomically: true, encoding: .utf8)
        let e = #expect(throws: MediaError.self) {
            _ = try VideoWriter(path: out, width: 32, height: 32, options: .init(audioFrom: notMedia))
        }
        #expect(e?.description.contains(notMedia) == true)
        #expect(dir.contents() == ["sound.txt"])

        // Abandoned mid-way (no finish): nothing at the destination, no temporary left.
        do {
            let w = try VideoWriter(path: out, width: 32, height: 32)
            try w.write(TestSupport.pattern(width: 32, height: 32, t: 0))
            #expect(dir.contents().count == 2)  // the hidden temporary
        }
        #expect(dir.contents() == ["sound.txt"])
        #expect(throws: MediaError.self) { _ = try VideoWriter(path: out, width: 33, height: 32) }
    }

    @Test func pngRoundTripIsExactAndJpegIsClose() throws {
        let dir = TestSupport.TempDir()
        let img = TestSupport.pattern(width: 70, height: 50, t: 3)
        try ImageIO.write(img, to: dir.file("a.png"))
        #expect(try ImageIO.read(dir.file("a.png")) == img)
        try ImageIO.write(img, to: dir.file("a.jpg"), quality: 95)
        let j = try ImageIO.read(dir.file("a.jpg"))
        #expect(j.width == 70 && j.height == 50)
        #expect(TestSupport.meanAbsError(img, j) < 3)
        #expect(throws: MediaError.self) { try ImageIO.write(img, to: dir.file("a.bmpx")) }
        #expect(Set(dir.contents()) == ["a.png", "a.jpg"])
    }

    @Test func realPortraitsDecode() throws {
        let media = try #require(TestSupport.mediaDir, "shared media folder not found")
        let s0 = try ImageIO.read(media + "/liveportrait/s0.jpg")
        #expect(s0.width == 600 && s0.height == 704)
        let ref = try ImageIO.read(media + "/personalive-demo/ref_image.png")
        #expect(ref.width == 512 && ref.height == 512)
    }

    @Test func resizeFollowsPILSemantics() throws {
        let flat = RGBImage(width: 37, height: 23, fill: (12, 200, 99))
        for f in ResizeFilter.allCases {
            let r = try flat.resized(width: 64, height: 9, filter: f)
            #expect(r.pixels.allSatisfy { [12, 200, 99].contains($0) }, "\(f)")
            #expect(r.pixel(x: 63, y: 8) == (12, 200, 99))
        }
        // Area 2× down is the mean of each 2×2 block (rounded half up).
        var px = [UInt8](repeating: 0, count: 4 * 2 * 3)
        for i in 0..<8 { px[i * 3] = UInt8(i * 10) }
        let small = try RGBImage(width: 4, height: 2, pixels: px).resized(width: 2, height: 1, filter: .area)
        #expect(small.pixel(x: 0, y: 0).0 == 25)  // (0+10+40+50)/4
        #expect(small.pixel(x: 1, y: 0).0 == 45)  // (20+30+60+70)/4
        // Bilinear 2× up of [0, 100]: PIL gives 0, 25, 75, 100.
        let row = try RGBImage(width: 2, height: 1, pixels: [0, 0, 0, 100, 100, 100])
        let up = try row.resized(width: 4, height: 1, filter: .bilinear)
        #expect((0..<4).map { up.pixel(x: $0, y: 0).0 } == [0, 25, 75, 100])
        // A box reaching past the image gives black where the sample centre is outside.
        let crop = try flat.resampled(x1: -37, y1: 0, x2: 37, y2: 23, width: 2, height: 1)
        #expect(crop.pixel(x: 0, y: 0) == (0, 0, 0))
        #expect(crop.pixel(x: 1, y: 0) == (12, 200, 99))
    }

    @Test func cropAndPad() throws {
        let img = TestSupport.pattern(width: 30, height: 20, t: 0)
        let c = try img.cropped(x: 5, y: 4, width: 10, height: 6)
        #expect(c.pixel(x: 0, y: 0) == img.pixel(x: 5, y: 4))
        #expect(c.pixel(x: 9, y: 5) == img.pixel(x: 14, y: 9))
        #expect(throws: MediaError.self) { try img.cropped(x: 25, y: 0, width: 10, height: 5) }
        let sq = try img.centerSquareCropped()
        #expect(sq.width == 20 && sq.pixel(x: 0, y: 0) == img.pixel(x: 5, y: 0))
        let p = try img.paddedToSquare(fill: (1, 2, 3))
        #expect(p.width == 30 && p.height == 30)
        #expect(p.pixel(x: 0, y: 0) == (1, 2, 3))
        #expect(p.pixel(x: 0, y: 5) == img.pixel(x: 0, y: 0))
        #expect(p.pixel(x: 29, y: 29) == (1, 2, 3))
    }
}
