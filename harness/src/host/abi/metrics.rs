//! Metrics: `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric`,
//! `proxy_get_metric`. One stat per name across all VMs, as in Envoy.

use anyhow::Result;
use wasmtime::Linker;

use super::{BAD_ARGUMENT, C, NOT_FOUND, OK, read_string, write, write_u32};
use crate::host::vm::VmState;
use crate::host::world::{Metric, MetricKind};

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C, kind: i32, ptr: i32, len: i32, ret: i32| -> Result<i32> {
            let name = read_string(&mut c, ptr, len)?;
            let kind = match kind {
                0 => MetricKind::Counter,
                1 => MetricKind::Gauge,
                2 => MetricKind::Histogram,
                _ => return Ok(BAD_ARGUMENT),
            };
            let id = {
                let mut world = c.data().world.borrow_mut();
                match world
                    .metrics
                    .iter()
                    .position(|m| m.name == name && m.kind == kind)
                {
                    Some(i) => i,
                    None => {
                        world.metrics.push(Metric {
                            name,
                            kind,
                            value: 0,
                        });
                        world.metrics.len() - 1
                    }
                }
            };
            write_u32(&mut c, ret, id as u32 + 1)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |c: C, id: i32, offset: i64| -> Result<i32> {
            let mut world = c.data().world.borrow_mut();
            let Some(m) = world.metrics.get_mut((id as u32 as usize).wrapping_sub(1)) else {
                return Ok(NOT_FOUND);
            };
            match m.kind {
                MetricKind::Counter if offset <= 0 => return Ok(BAD_ARGUMENT),
                MetricKind::Histogram => return Ok(BAD_ARGUMENT),
                _ => m.value = m.value.saturating_add(offset),
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |c: C, id: i32, value: i64| -> Result<i32> {
            let mut world = c.data().world.borrow_mut();
            let Some(m) = world.metrics.get_mut((id as u32 as usize).wrapping_sub(1)) else {
                return Ok(NOT_FOUND);
            };
            match m.kind {
                // Envoy raises a counter to the value (never lowers it).
                MetricKind::Counter => m.value = m.value.max(value),
                MetricKind::Gauge => m.value = value,
                MetricKind::Histogram => m.value += 1,
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C, id: i32, ret: i32| -> Result<i32> {
            let value = {
                let world = c.data().world.borrow();
                match world.metrics.get((id as u32 as usize).wrapping_sub(1)) {
                    None => return Ok(NOT_FOUND),
                    Some(m) if m.kind == MetricKind::Histogram => return Ok(BAD_ARGUMENT),
                    Some(m) => m.value,
                }
            };
            write(&mut c, ret as u32, &value.to_le_bytes())?;
            Ok(OK)
        },
    )?;
    Ok(())
}
