// JobQueue.swift — the animation jobs of `POST /v1/animations` (the offline path of the
// reference's inference_offline.py behind a queue, as a job API such as Replicate's predictions
// exposes it): queued → running → done | failed, a fixed number of worker threads sharing one model
// through a ModelLock, each job's files in a folder of its own under the server's work folder,
// removed when the job fails or is deleted, and all of them when the server stops.
import Foundation
import Inference
import Logging
import Media
import Torch

public enum JobStatus: String, Codable, Sendable {
    case queued, running, done, failed
}

/// What a job animates: inputs already validated (the driving video decodes at least one frame,
/// the pose data parses), stored in the job's folder.
struct JobInput {
    enum Driving {
        case video(String)
        case pose(PoseData, motion: Tensor?)
    }
    let reference: RGBImage
    let driving: Driving
}

/// A job as `GET /v1/animations/{id}` reports it.
public struct JobState: Codable, Sendable {
    public let id: String
    public var status: JobStatus
    /// Fraction of the driving frames written, 0…1.
    public var progress: Double
    public var frames: Int
    public var error: String?
    public var seconds: Double?
}

final class JobQueue: @unchecked Sendable {
    private final class Job {
        var state: JobState
        let folder: URL
        var input: JobInput?
        let created = Date()
        init(id: String, folder: URL, input: JobInput) {
            state = JobState(id: id, status: .queued, progress: 0, frames: 0, error: nil, seconds: nil)
            self.folder = folder
            self.input = input
        }
        var output: URL { folder.appendingPathComponent("animation.mp4") }
    }

    let modelLock: ModelLock
    let root: URL
    let logger: Logger
    let seed: UInt64
    let maxFrames: Int?
    private let condition = NSCondition()
    private var jobs: [String: Job] = [:]
    private var pending: [String] = []
    private var stopping = false
    private var workers: [Thread] = []
    private var active = 0

    /// `concurrency` worker threads; `root` is the server's work folder (one subfolder per job).
    init(modelLock: ModelLock, root: URL, concurrency: Int, seed: UInt64, maxFrames: Int?, logger: Logger) {
        self.modelLock = modelLock
        self.root = root
        self.seed = seed
        self.maxFrames = maxFrames
        self.logger = logger
        for i in 0..<max(1, concurrency) {
            let t = Thread { [unowned self] in self.work() }
            t.name = "personalive-job-\(i)"
            t.stackSize = 8 << 20
            workers.append(t)
            t.start()
        }
    }

    /// A new job folder (the caller stores the uploads in it, then submits or removes it).
    func makeFolder() throws -> (String, URL) {
        let id = UUID().uuidString.lowercased()
        let folder = root.appendingPathComponent("job-\(id)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return (id, folder)
    }

    func submit(id: String, folder: URL, input: JobInput) {
        condition.lock()
        jobs[id] = Job(id: id, folder: folder, input: input)
        pending.append(id)
        condition.signal()
        condition.unlock()
        logger.info("job \(id) queued")
    }

    func state(_ id: String) -> JobState? {
        condition.lock()
        defer { condition.unlock() }
        return jobs[id]?.state
    }

    /// The finished video of a done job.
    func video(_ id: String) -> (JobState, URL)? {
        condition.lock()
        defer { condition.unlock() }
        guard let job = jobs[id] else { return nil }
        return (job.state, job.output)
    }

    /// Forgets a finished or queued job and removes its files; a running job cannot be deleted.
    func delete(_ id: String) throws -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard let job = jobs[id] else { return false }
        if job.state.status == .running { throw APIError(.conflict, "job \(id) is running; delete it when it is done") }
        pending.removeAll { $0 == id }
        jobs[id] = nil
        try? FileManager.default.removeItem(at: job.folder)
        return true
    }

    var counts: (queued: Int, running: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (pending.count, active)
    }

    /// Stops the workers after their current jobs and removes every job's files.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while active > 0 { condition.wait() }
        for job in jobs.values { try? FileManager.default.removeItem(at: job.folder) }
        jobs = [:]
        pending = []
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while pending.isEmpty && !stopping { condition.wait() }
            if stopping { condition.unlock(); return }
            let id = pending.removeFirst()
            guard let job = jobs[id], let input = job.input else { condition.unlock(); continue }
            job.state.status = .running
            job.input = nil
            active += 1
            condition.unlock()

            let started = Date()
            var failure: String?
            do {
                try run(input, into: job.output.path) { done, total in
                    self.condition.lock()
                    job.state.frames = done
                    if let total, total > 0 { job.state.progress = min(1, Double(done) / Double(total)) }
                    self.condition.unlock()
                }
            } catch {
                failure = "\(error)"
            }
            // The inputs go once the job has run; a failed job keeps nothing.
            for name in (try? FileManager.default.contentsOfDirectory(atPath: job.folder.path)) ?? []
            where name != "animation.mp4" || failure != nil {
                try? FileManager.default.removeItem(at: job.folder.appendingPathComponent(name))
            }
            condition.lock()
            job.state.seconds = Date().timeIntervalSince(started)
            if let failure {
                job.state.status = .failed
                job.state.error = failure
                logger.error("job \(id) failed: \(failure)")
            } else {
                job.state.status = .done
                job.state.progress = 1
                logger.info("job \(id) done: \(job.state.frames) frames in \(String(format: "%.1f", job.state.seconds ?? 0)) s")
            }
            active -= 1
            condition.broadcast()
            condition.unlock()
        }
    }

    private func run(_ input: JobInput, into output: String, progress: @escaping (Int, Int?) -> Void) throws {
        let pipeline = try StreamingPipeline(sharing: modelLock, seed: seed, logger: logger)
        let animator = Animator(pipeline: pipeline, logger: logger)
        var options = AnimationOptions()
        options.maxFrames = maxFrames
        switch input.driving {
        case .video(let path):
            _ = try animator.animate(reference: input.reference, drivingVideo: path, output: output, options: options,
                                     progress: progress)
        case .pose(let pose, let motion):
            _ = try animator.animate(reference: input.reference, pose: pose, motion: motion, output: output, options: options,
                                     progress: progress)
        }
    }
}
