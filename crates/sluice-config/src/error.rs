//! Configuration errors that name the file, the key path and what was expected.

use std::fmt;

/// One problem in a project file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, relative to the project directory where possible.
    pub file: String,
    /// The key path inside the file, such as `syncs.customers_to_crm.mode`.
    pub path: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// An error at a key path of a file.
    pub fn at(file: impl Into<String>, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let path = path.into();
        ConfigError {
            file: file.into(),
            path: if path.is_empty() { None } else { Some(path) },
            message: message.into(),
        }
    }

    /// An error about a file as a whole.
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { file: file.into(), path: None, message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: {}: {}", self.file, path, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a project, so a user can fix them all at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}
