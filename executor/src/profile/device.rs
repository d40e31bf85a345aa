//! Which burn backend runs a stage. flex is the default CPU backend (20× faster than ndarray on
//! a tiny MLP, 3.5× on VGG-16 convolutions, measured on the 2-core dev machine); ndarray and
//! wgpu are cargo features, and asking for one that was not compiled in is an error, not a panic.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::ExecError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Flex,
    Ndarray,
    Wgpu,
}

impl DeviceChoice {
    pub const ALL: [DeviceChoice; 3] = [DeviceChoice::Flex, DeviceChoice::Ndarray, DeviceChoice::Wgpu];

    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Flex => "flex",
            DeviceChoice::Ndarray => "ndarray",
            DeviceChoice::Wgpu => "wgpu",
        }
    }

    /// The burn device for this backend, or a clear error if this build lacks it.
    pub fn device(self) -> Result<Device, ExecError> {
        match self {
            DeviceChoice::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // the design card names ndarray; flex replaces it upstream
            DeviceChoice::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu => Ok(Device::wgpu(Default::default())),
            #[allow(unreachable_patterns)]
            other => Err(ExecError::BackendNotCompiled(other.name().to_string())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceChoice {
    type Err = ExecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flex" | "cpu" => Ok(DeviceChoice::Flex),
            "ndarray" => Ok(DeviceChoice::Ndarray),
            "wgpu" | "gpu" => Ok(DeviceChoice::Wgpu),
            other => Err(ExecError::UnknownDevice(other.to_string())),
        }
    }
}
