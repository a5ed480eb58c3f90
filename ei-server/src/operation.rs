//! The contract's operations: which one a request is, from the endpoint that received
//! it through the codec, the rules, the store and the metrics. [`Operation`] names all
//! three; [`WriteOperation`] is the two that write, so a write can never claim to be
//! a FindContent.

/// The three operations, named by the request body's root element (serialized by
/// that name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Operation {
    Update,
    ProcessNotification,
    FindContent,
}

/// The operations that write to the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WriteOperation {
    Update,
    ProcessNotification,
}

impl Operation {
    pub const ALL: [Operation; 3] = [
        Operation::Update,
        Operation::ProcessNotification,
        Operation::FindContent,
    ];

    /// The responder namespace of the operation's request and reply elements.
    pub const fn namespace(self) -> &'static str {
        match self {
            Operation::Update => "urn:riv:itintegration:engagementindex:UpdateResponder:1",
            Operation::ProcessNotification => {
                "urn:riv:itintegration:engagementindex:ProcessNotificationResponder:1"
            }
            Operation::FindContent => {
                "urn:riv:itintegration:engagementindex:FindContentResponder:1"
            }
        }
    }

    /// The request element's local name (also the metrics' `service` label).
    pub const fn name(self) -> &'static str {
        match self {
            Operation::Update => "Update",
            Operation::ProcessNotification => "ProcessNotification",
            Operation::FindContent => "FindContent",
        }
    }

    /// The SOAPAction of the operation: its namespace and name.
    pub fn soap_action(self) -> String {
        format!("{}:{}", self.namespace(), self.name())
    }

    /// The operation's position in [`Operation::ALL`] (for per-operation arrays).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The write operation this is, unless it is FindContent.
    pub const fn write(self) -> Option<WriteOperation> {
        match self {
            Operation::Update => Some(WriteOperation::Update),
            Operation::ProcessNotification => Some(WriteOperation::ProcessNotification),
            Operation::FindContent => None,
        }
    }

    /// The operation whose request element is `name`.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.name() == name)
    }
}

impl WriteOperation {
    pub const fn operation(self) -> Operation {
        match self {
            WriteOperation::Update => Operation::Update,
            WriteOperation::ProcessNotification => Operation::ProcessNotification,
        }
    }

    pub const fn name(self) -> &'static str {
        self.operation().name()
    }

    pub const fn namespace(self) -> &'static str {
        self.operation().namespace()
    }
}

impl From<WriteOperation> for Operation {
    fn from(w: WriteOperation) -> Operation {
        w.operation()
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for WriteOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_indexes_and_the_write_subset_agree() {
        for (i, op) in Operation::ALL.into_iter().enumerate() {
            assert_eq!(op.index(), i);
            assert_eq!(Operation::from_name(op.name()), Some(op));
            assert_eq!(op.write().map(Operation::from), op.write().map(|_| op));
        }
        assert_eq!(Operation::FindContent.write(), None);
        assert_eq!(
            WriteOperation::ProcessNotification.namespace(),
            Operation::ProcessNotification.namespace()
        );
        assert_eq!(
            Operation::ProcessNotification.soap_action(),
            "urn:riv:itintegration:engagementindex:ProcessNotificationResponder:1:ProcessNotification"
        );
    }
}
