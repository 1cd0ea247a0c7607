// HDF5Attributes.swift — attributes of groups and datasets (h5py's `.attrs`): numbers, number
// arrays and strings, written the way h5py writes Python values (int64, float64, UTF-8 strings).
import CHDF5
import Foundation

public enum HDF5AttributeValue: Equatable, Sendable, CustomStringConvertible {
    case int(Int64)
    case double(Double)
    case string(String)
    case ints([Int64])
    case doubles([Double])
    case strings([String])

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .double(let v): return String(v)
        case .string(let v): return "\"\(v)\""
        case .ints(let v): return "\(v)"
        case .doubles(let v): return "\(v)"
        case .strings(let v): return "\(v)"
        }
    }

    /// A whole number (an integer, or a float with no fraction).
    public var intValue: Int? {
        switch self {
        case .int(let v): return Int(v)
        case .double(let v) where v == v.rounded() && abs(v) < 1e15: return Int(v)
        case .ints(let v) where v.count == 1: return Int(v[0])
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .int(let v): return Double(v)
        case .double(let v): return v
        case .ints(let v) where v.count == 1: return Double(v[0])
        case .doubles(let v) where v.count == 1: return v[0]
        default: return nil
        }
    }

    public var stringValue: String? {
        switch self {
        case .string(let s): return s
        case .strings(let s) where s.count == 1: return s[0]
        default: return nil
        }
    }
}

/// Groups and datasets carry attributes.
public protocol HDF5AttributeOwner: AnyObject {
    var file: HDF5File { get }
    var path: String { get }
}

extension HDF5AttributeOwner {
    fileprivate var ownerID: hid_t {
        if let g = self as? HDF5Group { return g.objectID }
        if let d = self as? HDF5Dataset { return d.objectID }
        return -1
    }

    private func fail(_ name: String, _ what: String) -> HDF5Error {
        HDF5Error(file: file.path, object: "\(path) attribute '\(name)'", "\(what) (\(H5.reason()))")
    }

    public func hasAttribute(_ name: String) -> Bool {
        H5.silence()
        let r = H5Aexists(ownerID, name)
        if r < 0 { _ = H5.reason() }
        return r > 0
    }

    /// Attribute names in name order.
    public func attributeNames() throws -> [String] {
        H5.silence()
        let n = h5s_attribute_count(ownerID)
        guard n >= 0 else { throw HDF5Error(file: file.path, object: path, "cannot list attributes (\(H5.reason()))") }
        var names: [String] = []
        for i in 0..<n {
            let len = H5Aget_name_by_idx(ownerID, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), nil, 0, h5s_p_default())
            guard len >= 0 else { throw HDF5Error(file: file.path, object: path, "cannot read attribute \(i) name (\(H5.reason()))") }
            var buf = [CChar](repeating: 0, count: Int(len) + 1)
            _ = H5Aget_name_by_idx(ownerID, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), &buf, buf.count, h5s_p_default())
            names.append(String(cString: buf))
        }
        return names
    }

    /// Writes (or replaces) an attribute.
    public func setAttribute(_ name: String, _ value: HDF5AttributeValue) throws {
        H5.silence()
        if hasAttribute(name), H5Adelete(ownerID, name) < 0 { throw fail(name, "cannot replace") }
        switch value {
        case .int(let v): try writeNumbers(name, [v], scalar: true)
        case .double(let v): try writeNumbers(name, [v], scalar: true)
        case .ints(let v): try writeNumbers(name, v, scalar: false)
        case .doubles(let v): try writeNumbers(name, v, scalar: false)
        case .string(let s): try writeStrings(name, [s], scalar: true)
        case .strings(let s): try writeStrings(name, s, scalar: false)
        }
    }

    public func setAttribute(_ name: String, _ value: String) throws { try setAttribute(name, .string(value)) }
    public func setAttribute(_ name: String, _ value: Int) throws { try setAttribute(name, .int(Int64(value))) }
    public func setAttribute(_ name: String, _ value: Double) throws { try setAttribute(name, .double(value)) }

    private func space(_ n: Int, scalar: Bool) -> hid_t {
        if scalar { return H5Screate(H5S_SCALAR) }
        var d = [hsize_t(n)]
        return H5Screate_simple(1, &d, nil)
    }

    private func writeNumbers<T: HDF5Scalar>(_ name: String, _ values: [T], scalar: Bool) throws {
        let sp = space(values.count, scalar: scalar)
        defer { H5.close(sp) }
        let a = H5Acreate2(ownerID, name, T.hdf5DType.fileType, sp, h5s_p_default(), h5s_p_default())
        guard a >= 0 else { throw fail(name, "cannot create") }
        defer { H5.close(a) }
        let status = values.withUnsafeBytes { H5Awrite(a, T.hdf5DType.nativeType, $0.baseAddress) }
        guard status >= 0 else { throw fail(name, "cannot write") }
    }

    private func writeStrings(_ name: String, _ values: [String], scalar: Bool) throws {
        let sp = space(values.count, scalar: scalar)
        defer { H5.close(sp) }
        let t = HDF5Strings.variableType()
        defer { H5.close(t) }
        let a = H5Acreate2(ownerID, name, t, sp, h5s_p_default(), h5s_p_default())
        guard a >= 0 else { throw fail(name, "cannot create") }
        defer { H5.close(a) }
        let status = HDF5Strings.withCStrings(values) { H5Awrite(a, t, $0) }
        guard status >= 0 else { throw fail(name, "cannot write") }
    }

    /// Reads an attribute, or nil when it does not exist. Integers come back as `.int`/`.ints`,
    /// floats as `.double`/`.doubles`, strings (variable or fixed length) as `.string`/`.strings`.
    public func attribute(_ name: String) throws -> HDF5AttributeValue? {
        guard hasAttribute(name) else { return nil }
        H5.silence()
        let a = H5Aopen(ownerID, name, h5s_p_default())
        guard a >= 0 else { throw fail(name, "cannot open") }
        defer { H5.close(a) }
        let t = H5Aget_type(a)
        defer { H5.close(t) }
        let sp = H5Aget_space(a)
        defer { H5.close(sp) }
        let isScalar = H5Sget_simple_extent_type(sp) == H5S_SCALAR
        let n = Int(H5Sget_simple_extent_npoints(sp))
        switch H5Tget_class(t) {
        case H5T_INTEGER:
            var v = [Int64](repeating: 0, count: n)
            guard v.withUnsafeMutableBytes({ H5Aread(a, h5s_t_native_int64(), $0.baseAddress) }) >= 0 else { throw fail(name, "cannot read") }
            return isScalar ? .int(v[0]) : .ints(v)
        case H5T_FLOAT:
            var v = [Double](repeating: 0, count: n)
            guard v.withUnsafeMutableBytes({ H5Aread(a, h5s_t_native_double(), $0.baseAddress) }) >= 0 else { throw fail(name, "cannot read") }
            return isScalar ? .double(v[0]) : .doubles(v)
        case H5T_STRING:
            let s = try HDF5Strings.read(count: n, fileType: t, what: "\(file.path): \(path) attribute '\(name)'") { mem, buf in
                H5Aread(a, mem, buf)
            }
            return isScalar ? .string(s.first ?? "") : .strings(s)
        default:
            throw HDF5Error(file: file.path, object: "\(path) attribute '\(name)'",
                            "unsupported attribute type \(HDF5DType(typeID: t)) (expected a number or string)")
        }
    }
}
