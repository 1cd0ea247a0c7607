// SamplerConfig.swift — settings shared by the stage samplers (sizes, margins, augmentation), the
// float batch type they fill, and the clip schedule: every clip once per epoch in a seeded order,
// indexed by (step, rank, sample) so that a resumed or sharded run sees exactly the same data.

public struct SamplerConfig: Sendable, Equatable {
    /// Reference/target image size (frames are resized when the dataset differs).
    public var imageSize: Int
    /// Face crop size fed to the motion encoder (X-NeMo style, [-1, 1]).
    public var motionEncoderSize: Int
    /// Frame size fed to the LivePortrait motion extractor ([0, 1]).
    public var motionExtractorSize: Int
    /// Stage 1/2: minimum frame distance between reference and target (clamped to the clip length − 1).
    public var sampleMargin: Int
    /// Stage 3: frames per sequence and the stride between them.
    public var nSampleFrames: Int
    public var sampleRate: Int
    public var batchSize: Int
    public var seed: UInt64
    /// Which split to draw from ("train" or "val").
    public var split: String
    /// Face crop: side of the square box as a multiple of the face box's longer side.
    public var faceCropScale: Double
    /// Face crop: one side stretched by a factor drawn from this range (aspect augmentation).
    public var stretch: ClosedRange<Double>
    /// Face crop colour jitter strengths (torchvision ColorJitter brightness/contrast/saturation).
    public var brightness: Double
    public var contrast: Double
    public var saturation: Double
    /// Data-parallel sharding: this process's rank among `worldSize`.
    public var rank: Int
    public var worldSize: Int

    public init(imageSize: Int = 512, motionEncoderSize: Int = 224, motionExtractorSize: Int = 256, sampleMargin: Int = 30,
                nSampleFrames: Int = 16, sampleRate: Int = 4, batchSize: Int = 4, seed: UInt64 = 42, split: String = "train",
                faceCropScale: Double = 1.0, stretch: ClosedRange<Double> = 1.0...1.3, brightness: Double = 0.2,
                contrast: Double = 0.2, saturation: Double = 0.2, rank: Int = 0, worldSize: Int = 1) {
        self.imageSize = imageSize; self.motionEncoderSize = motionEncoderSize; self.motionExtractorSize = motionExtractorSize
        self.sampleMargin = sampleMargin; self.nSampleFrames = nSampleFrames; self.sampleRate = sampleRate
        self.batchSize = batchSize; self.seed = seed; self.split = split; self.faceCropScale = faceCropScale
        self.stretch = stretch; self.brightness = brightness; self.contrast = contrast; self.saturation = saturation
        self.rank = rank; self.worldSize = worldSize
    }

    public func validate() throws {
        func check(_ ok: Bool, _ msg: String) throws { if !ok { throw SamplerError(msg) } }
        try check(imageSize >= 8 && motionEncoderSize >= 8 && motionExtractorSize >= 8, "image sizes must be ≥ 8")
        try check(sampleMargin >= 0, "sample_margin must be ≥ 0, got \(sampleMargin)")
        try check(nSampleFrames >= 1 && sampleRate >= 1, "n_sample_frames and sample_rate must be ≥ 1")
        try check(batchSize >= 1, "batch size must be ≥ 1, got \(batchSize)")
        try check(worldSize >= 1 && rank >= 0 && rank < worldSize, "rank \(rank) is not in 0..<\(worldSize)")
        try check(faceCropScale > 0 && stretch.lowerBound >= 1, "face crop scale must be > 0 and stretch ≥ 1")
        try check(brightness >= 0 && contrast >= 0 && saturation >= 0, "colour jitter strengths must be ≥ 0")
    }
}

public struct SamplerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A dense float array with its shape (row-major), the sampler's output before tensor conversion.
public struct FloatBatch: Sendable, Equatable {
    public var shape: [Int]
    public var values: [Float]

    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not match \(values.count) values")
        self.shape = shape
        self.values = values
    }

    public init(zeros shape: [Int]) {
        self.shape = shape
        values = [Float](repeating: 0, count: shape.reduce(1, *))
    }
}

/// Which clip each (step, sample) uses: an epoch-wise seeded permutation of the split.
struct ClipSchedule: Sendable {
    let clips: [String]
    let seed: UInt64

    init(clips: [String], seed: UInt64) {
        self.clips = clips
        self.seed = seed
    }

    /// The schedule of a sampler: validates its config and requires a non-empty split.
    init(dataset: DatasetReader, config: SamplerConfig) throws {
        try config.validate()
        let ids = try dataset.split(config.split)
        guard !ids.isEmpty else { throw SamplerError("\(dataset.path): split '\(config.split)' has no clips") }
        self.init(clips: ids, seed: config.seed)
    }

    func clip(globalIndex g: Int) -> String {
        let n = clips.count
        let epoch = g / n
        var rng = SeededRandom(seed: seed, 0xC1195, UInt64(epoch))
        return clips[rng.permutation(n)[g % n]]
    }

    /// The global sample index of sample `b` of `step` on `rank` (batches interleave across ranks).
    static func globalIndex(step: Int, rank: Int, worldSize: Int, batchSize: Int, sample b: Int) -> Int {
        (step * worldSize + rank) * batchSize + b
    }
}
