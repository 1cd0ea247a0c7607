// HDF5.swift — a small Swift API over the HDF5 C library (h5py's File/Group in spirit): files,
// groups, errors that name the file and the object path, and element types. Datasets are in
// HDF5Dataset.swift, attributes in HDF5Attributes.swift.
import CHDF5
import Foundation

/// An HDF5 failure: the file, the object path inside it and what went wrong (with HDF5's reason).
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let object: String?
    public let message: String

    public init(file: String, object: String?, _ message: String) {
        self.file = file
        self.object = object
        self.message = message
    }

    public var description: String {
        if let object { return "\(file): \(object): \(message)" }
        return "\(file): \(message)"
    }
}

/// Element types as numpy names them.
public enum HDF5DType: Equatable, Hashable, Sendable, CustomStringConvertible {
    case uint8, int8, uint16, int16, uint32, int32, uint64, int64, float32, float64
    case string
    /// Anything else (compound, enum, opaque, half floats, ...), with HDF5's class name.
    case other(String)

    public var description: String {
        switch self {
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .uint32: return "uint32"
        case .int32: return "int32"
        case .uint64: return "uint64"
        case .int64: return "int64"
        case .float32: return "float32"
        case .float64: return "float64"
        case .string: return "string"
        case .other(let s): return s
        }
    }

    /// The in-memory type HDF5 converts to when reading or from when writing.
    var nativeType: hid_t {
        switch self {
        case .uint8: return h5s_t_native_uint8()
        case .int8: return h5s_t_native_int8()
        case .uint16: return h5s_t_native_uint16()
        case .int16: return h5s_t_native_int16()
        case .uint32: return h5s_t_native_uint32()
        case .int32: return h5s_t_native_int32()
        case .uint64: return h5s_t_native_uint64()
        case .int64: return h5s_t_native_int64()
        case .float32: return h5s_t_native_float()
        case .float64: return h5s_t_native_double()
        case .string, .other: return -1
        }
    }

    /// The little-endian type stored in files.
    var fileType: hid_t {
        switch self {
        case .uint8: return h5s_t_std_u8le()
        case .int8: return h5s_t_std_i8le()
        case .uint16: return h5s_t_std_u16le()
        case .int16: return h5s_t_std_i16le()
        case .uint32: return h5s_t_std_u32le()
        case .int32: return h5s_t_std_i32le()
        case .uint64: return h5s_t_std_u64le()
        case .int64: return h5s_t_std_i64le()
        case .float32: return h5s_t_ieee_f32le()
        case .float64: return h5s_t_ieee_f64le()
        case .string, .other: return -1
        }
    }

    /// Classifies an HDF5 datatype id.
    init(typeID t: hid_t) {
        let size = H5Tget_size(t)
        switch H5Tget_class(t) {
        case H5T_INTEGER:
            let signed = H5Tget_sign(t) == H5T_SGN_2
            switch (size, signed) {
            case (1, false): self = .uint8
            case (1, true): self = .int8
            case (2, false): self = .uint16
            case (2, true): self = .int16
            case (4, false): self = .uint32
            case (4, true): self = .int32
            case (8, false): self = .uint64
            case (8, true): self = .int64
            default: self = .other("int\(size * 8)")
            }
        case H5T_FLOAT:
            switch size {
            case 4: self = .float32
            case 8: self = .float64
            default: self = .other("float\(size * 8)")
            }
        case H5T_STRING: self = .string
        case H5T_COMPOUND: self = .other("compound")
        case H5T_ENUM: self = .other("enum")
        case H5T_OPAQUE: self = .other("opaque")
        case H5T_ARRAY: self = .other("array")
        case H5T_VLEN: self = .other("vlen")
        case H5T_REFERENCE: self = .other("reference")
        case H5T_BITFIELD: self = .other("bitfield")
        default: self = .other("unknown")
        }
    }
}

/// Swift element types that map to an HDF5 type.
public protocol HDF5Scalar {
    static var hdf5DType: HDF5DType { get }
    init()
}
extension UInt8: HDF5Scalar { public static var hdf5DType: HDF5DType { .uint8 } }
extension Int8: HDF5Scalar { public static var hdf5DType: HDF5DType { .int8 } }
extension UInt16: HDF5Scalar { public static var hdf5DType: HDF5DType { .uint16 } }
extension Int16: HDF5Scalar { public static var hdf5DType: HDF5DType { .int16 } }
extension UInt32: HDF5Scalar { public static var hdf5DType: HDF5DType { .uint32 } }
extension Int32: HDF5Scalar { public static var hdf5DType: HDF5DType { .int32 } }
extension UInt64: HDF5Scalar { public static var hdf5DType: HDF5DType { .uint64 } }
extension Int64: HDF5Scalar { public static var hdf5DType: HDF5DType { .int64 } }
extension Float: HDF5Scalar { public static var hdf5DType: HDF5DType { .float32 } }
extension Double: HDF5Scalar { public static var hdf5DType: HDF5DType { .float64 } }

/// Helpers shared by the wrappers.
enum H5 {
    /// HDF5 prints its error stack to stderr by default (per thread); we report errors ourselves.
    static func silence() { h5s_silence_errors() }

    /// HDF5's own explanation of the failure that just happened on this thread.
    static func reason() -> String {
        var buf = [CChar](repeating: 0, count: 1024)
        let n = h5s_last_error(&buf, buf.count)
        return n > 0 ? String(cString: buf) : "unknown HDF5 error"
    }

    /// Releases an id. The library closes every id itself when it shuts down at process exit, so
    /// an owner released after that must not close its id again (HDF5 would print an error stack).
    static func close(_ id: hid_t) {
        if id >= 0, H5Iis_valid(id) > 0 { _ = H5Idec_ref(id) }
    }

    /// Joins a group path and a member name.
    static func join(_ parent: String, _ name: String) -> String {
        if name.hasPrefix("/") { return name }
        return parent == "/" ? "/" + name : parent + "/" + name
    }

    /// A property list with modification times off: identical content then gives identical bytes.
    static func creationPlist(_ cls: hid_t) -> hid_t {
        let p = H5Pcreate(cls)
        if p >= 0 { _ = h5s_no_times(p) }
        return p
    }
}

/// Owns one HDF5 id and releases it on deinit.
final class H5Handle: @unchecked Sendable {
    let id: hid_t
    init(_ id: hid_t) { self.id = id }
    deinit { H5.close(id) }
}

/// An open HDF5 file (h5py.File).
public final class HDF5File: @unchecked Sendable {
    public enum Mode: Sendable {
        case readOnly
        case readWrite
        /// Create, replacing any existing file.
        case truncate
    }

    public let path: String
    public let mode: Mode
    let handle: H5Handle

    public init(path: String, mode: Mode = .readOnly) throws {
        H5.silence()
        self.path = path
        self.mode = mode
        let id: hid_t
        switch mode {
        case .readOnly, .readWrite:
            guard FileManager.default.fileExists(atPath: path) else {
                throw HDF5Error(file: path, object: nil, "no such file")
            }
            guard H5Fis_hdf5(path) > 0 else {
                _ = H5.reason()
                throw HDF5Error(file: path, object: nil, "not an HDF5 file (no HDF5 signature; truncated or another format)")
            }
            id = H5Fopen(path, mode == .readOnly ? h5s_acc_rdonly() : h5s_acc_rdwr(), h5s_p_default())
        case .truncate:
            let fcpl = H5.creationPlist(h5s_p_file_create())
            defer { H5.close(fcpl) }
            id = H5Fcreate(path, h5s_acc_trunc(), fcpl, h5s_p_default())
        }
        guard id >= 0 else {
            throw HDF5Error(file: path, object: nil, "cannot \(mode == .truncate ? "create" : "open") file (\(H5.reason()))")
        }
        handle = H5Handle(id)
    }

    /// The root group "/".
    public var root: HDF5Group {
        get throws { try HDF5Group(file: self, path: "/") }
    }

    public func group(_ path: String) throws -> HDF5Group { try root.group(path) }
    public func dataset(_ path: String) throws -> HDF5Dataset { try root.dataset(path) }
    public func exists(_ path: String) -> Bool { (try? root.exists(path)) ?? false }

    /// Writes buffered data to disk.
    public func flush() throws {
        H5.silence()
        guard H5Fflush(handle.id, H5F_SCOPE_GLOBAL) >= 0 else {
            throw HDF5Error(file: path, object: nil, "flush failed (\(H5.reason()))")
        }
    }
}

/// What a group member is.
public enum HDF5ObjectKind: Sendable, Equatable {
    case group, dataset, other
}

/// A group (h5py.Group): members, sub-groups, datasets, attributes.
public final class HDF5Group: HDF5AttributeOwner, @unchecked Sendable {
    public let file: HDF5File
    /// Absolute path inside the file ("/clips/abc").
    public let path: String
    let handle: H5Handle
    var objectID: hid_t { handle.id }

    init(file: HDF5File, path: String) throws {
        H5.silence()
        self.file = file
        self.path = path
        let id = H5Gopen2(file.handle.id, path, h5s_p_default())
        guard id >= 0 else {
            throw HDF5Error(file: file.path, object: path, "cannot open group (\(H5.reason()))")
        }
        handle = H5Handle(id)
    }

    init(file: HDF5File, path: String, id: hid_t) {
        self.file = file
        self.path = path
        handle = H5Handle(id)
    }

    /// Whether `name` (a relative path, may contain '/') exists below this group.
    public func exists(_ name: String) throws -> Bool {
        H5.silence()
        var prefix = ""
        for part in name.split(separator: "/") {
            prefix += prefix.isEmpty ? String(part) : "/" + part
            let r = H5Lexists(handle.id, prefix, h5s_p_default())
            if r < 0 { _ = H5.reason(); return false }
            if r == 0 { return false }
        }
        return !prefix.isEmpty
    }

    /// The kind of object at `name`, or nil when there is none.
    public func kind(of name: String) throws -> HDF5ObjectKind? {
        guard try exists(name) else { return nil }
        let id = H5Oopen(handle.id, name, h5s_p_default())
        guard id >= 0 else {
            throw HDF5Error(file: file.path, object: H5.join(path, name), "cannot open object (\(H5.reason()))")
        }
        defer { H5.close(id) }
        switch H5Iget_type(id) {
        case H5I_GROUP: return .group
        case H5I_DATASET: return .dataset
        default: return .other
        }
    }

    /// Member names in name order (h5py's keys()).
    public func memberNames() throws -> [String] {
        H5.silence()
        let n = h5s_link_count(handle.id)
        guard n >= 0 else { throw HDF5Error(file: file.path, object: path, "cannot list members (\(H5.reason()))") }
        var names: [String] = []
        names.reserveCapacity(n)
        for i in 0..<n {
            let len = H5Lget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), nil, 0, h5s_p_default())
            guard len >= 0 else { throw HDF5Error(file: file.path, object: path, "cannot read member \(i) name (\(H5.reason()))") }
            var buf = [CChar](repeating: 0, count: Int(len) + 1)
            _ = H5Lget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), &buf, buf.count, h5s_p_default())
            names.append(String(cString: buf))
        }
        return names
    }

    public func group(_ name: String) throws -> HDF5Group {
        let full = H5.join(path, name)
        guard try exists(name) else { throw HDF5Error(file: file.path, object: full, "missing group") }
        guard try kind(of: name) == .group else { throw HDF5Error(file: file.path, object: full, "is not a group") }
        return try HDF5Group(file: file, path: full)
    }

    /// Creates a sub-group (parents must exist).
    @discardableResult
    public func createGroup(_ name: String) throws -> HDF5Group {
        H5.silence()
        let full = H5.join(path, name)
        let gcpl = H5.creationPlist(h5s_p_group_create())
        defer { H5.close(gcpl) }
        let id = H5Gcreate2(handle.id, name, h5s_p_default(), gcpl, h5s_p_default())
        guard id >= 0 else { throw HDF5Error(file: file.path, object: full, "cannot create group (\(H5.reason()))") }
        return HDF5Group(file: file, path: full, id: id)
    }

    /// Opens a sub-group, creating it (and its parents) when missing.
    public func requireGroup(_ name: String) throws -> HDF5Group {
        var g = self
        for part in name.split(separator: "/") {
            let p = String(part)
            g = try g.exists(p) ? g.group(p) : g.createGroup(p)
        }
        return g
    }

    public func dataset(_ name: String) throws -> HDF5Dataset {
        let full = H5.join(path, name)
        guard try exists(name) else { throw HDF5Error(file: file.path, object: full, "missing dataset") }
        guard try kind(of: name) == .dataset else { throw HDF5Error(file: file.path, object: full, "is not a dataset") }
        return try HDF5Dataset(file: file, path: full)
    }

    /// Removes the link `name` (the space is reclaimed only when the file is repacked, as in h5py).
    public func delete(_ name: String) throws {
        H5.silence()
        guard H5Ldelete(handle.id, name, h5s_p_default()) >= 0 else {
            throw HDF5Error(file: file.path, object: H5.join(path, name), "cannot delete (\(H5.reason()))")
        }
    }
}
