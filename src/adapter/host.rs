//! The host calls costguard makes, each returning `Result` for every status.
//!
//! The SDK's own wrappers (trait helpers and most of `proxy_wasm::hostcalls`)
//! `panic!` on statuses they do not expect, and a panic traps the VM. These
//! bind the same ABI functions directly, so a refused call is an `Err` the
//! filter handles.
#![allow(clashing_extern_declarations)]

use crate::budget::{Store, StoreError};
use crate::headers::HeaderPairs;
use std::ptr::{null, null_mut};

/// A non-Ok proxy-wasm status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

pub const NOT_FOUND: u32 = 1;
pub const CAS_MISMATCH: u32 = 8;

#[derive(Clone, Copy, Debug)]
#[repr(u32)]
pub enum Buffer {
    HttpRequestBody = 0,
    HttpResponseBody = 1,
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

#[derive(Clone, Copy)]
#[repr(u32)]
pub enum Map {
    RequestHeaders = 0,
    ResponseHeaders = 2,
    HttpCallResponseHeaders = 6,
    HttpCallResponseTrailers = 7,
}

#[derive(Clone, Copy)]
#[repr(u32)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

fn status(code: u32) -> Result<(), Status> {
    if code == 0 {
        Ok(())
    } else {
        Err(Status(code))
    }
}

/// Takes ownership of host-allocated bytes (allocated through the SDK's
/// exported allocator, so Rust's allocator owns them).
unsafe fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

pub fn get_buffer(buffer: Buffer, start: usize, max_size: usize) -> Result<Vec<u8>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        match proxy_get_buffer_bytes(buffer as u32, start, max_size, &mut data, &mut size) {
            0 => Ok(owned(data, size)),
            NOT_FOUND => Ok(Vec::new()),
            code => Err(Status(code)),
        }
    }
}

/// `(0, len, b)` replaces, `(len, 0, b)` appends, `(0, 0, b)` prepends.
pub fn set_buffer(buffer: Buffer, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    unsafe {
        status(proxy_set_buffer_bytes(
            buffer as u32,
            start,
            size,
            value.as_ptr(),
            value.len(),
        ))
    }
}

/// Every header of a map in one call (one copy into the VM).
pub fn get_headers(map: Map) -> Result<HeaderPairs, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        match proxy_get_header_map_pairs(map as u32, &mut data, &mut size) {
            0 => Ok(HeaderPairs::new(owned(data, size))),
            NOT_FOUND => Ok(HeaderPairs::default()),
            code => Err(Status(code)),
        }
    }
}

/// A header's value.
pub fn get_header(map: Map, name: &str) -> Result<Option<String>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        match proxy_get_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut size,
        ) {
            0 if data.is_null() => Ok(None),
            0 => Ok(Some(
                String::from_utf8_lossy(&owned(data, size)).into_owned(),
            )),
            NOT_FOUND => Ok(None),
            code => Err(Status(code)),
        }
    }
}

pub fn set_header(map: Map, name: &str, value: &str) -> Result<(), Status> {
    unsafe {
        status(proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        ))
    }
}

pub fn remove_header(map: Map, name: &str) -> Result<(), Status> {
    unsafe {
        status(proxy_remove_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
        ))
    }
}

/// Answers the request locally (the upstream is never called).
pub fn send_local_response(
    status_code: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Status> {
    let serialized = crate::headers::serialize(headers);
    let details = b"costguard";
    unsafe {
        status(proxy_send_local_response(
            status_code,
            details.as_ptr(),
            details.len(),
            if body.is_empty() {
                null()
            } else {
                body.as_ptr()
            },
            body.len(),
            serialized.as_ptr(),
            serialized.len(),
            -1,
        ))
    }
}

/// Sets filter state readable as `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub fn set_filter_state(name: &str, value: &[u8]) -> Result<(), Status> {
    unsafe {
        status(proxy_set_property(
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        ))
    }
}

pub fn define_metric(kind: MetricKind, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    unsafe {
        status(proxy_define_metric(
            kind as u32,
            name.as_ptr(),
            name.len(),
            &mut id,
        ))
        .map(|()| id)
    }
}

pub fn increment_metric(id: u32, by: i64) -> Result<(), Status> {
    unsafe { status(proxy_increment_metric(id, by)) }
}

pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    unsafe { status(proxy_record_metric(id, value)) }
}

/// Wall-clock time, milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let mut t = 0u64;
    unsafe {
        let _ = proxy_get_current_time_nanoseconds(&mut t);
    }
    t / 1_000_000
}

pub fn set_tick_period_ms(period: u32) -> Result<(), Status> {
    unsafe { status(proxy_set_tick_period_milliseconds(period)) }
}

/// Makes `context_id` (a stream of this VM) the target of the next calls,
/// from the root context's tick.
pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    unsafe { status(proxy_set_effective_context(context_id)) }
}

/// Resets the current (effective) HTTP stream.
pub fn reset_stream() -> Result<(), Status> {
    const HTTP_REQUEST: u32 = 0;
    unsafe { status(proxy_close_stream(HTTP_REQUEST)) }
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, buf_len: usize) -> u16;
}

/// Cryptographic randomness from the host (WASI `random_get`).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    unsafe {
        let _ = random_get(buf.as_mut_ptr(), N);
    }
    buf
}

/// Envoy shared data (per process, scoped by `vm_id`) as the core's [`Store`].
pub struct SharedData;

impl Store for SharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        unsafe {
            match proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) {
                0 => Ok(Some((owned(data, size), cas))),
                NOT_FOUND => Ok(None),
                code => Err(StoreError::Host(code)),
            }
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        unsafe {
            match proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) {
                0 => Ok(()),
                CAS_MISMATCH => Err(StoreError::CasMismatch),
                code => Err(StoreError::Host(code)),
            }
        }
    }
}
