// Installer: what the public listener needs from the Sentry integration lifecycle (lib/sentry
// implements it). Kept here, as a narrow seam, so ingest does not depend on OAuth machinery.
#pragma once

#include <functional>
#include <string>

#include "common/status.h"

namespace switchyard::ingest {

// An `installation` webhook, after it was stored durably.
struct InstallationEvent {
  std::string source;
  std::string action;  // "created" | "deleted"
  std::string uuid;    // installation uuid
  std::string code;    // grant code ("created" only); a secret: never log it
  std::string org;     // organization slug
};

class Installer {
 public:
  virtual ~Installer() = default;
  // GET /setup/<source>: exchange `code` for installation `uuid` (or join an exchange already
  // under way for it; succeed at once if the installation already holds tokens). `done` runs
  // once, on any thread: OK → redirect; an error → a readable error page.
  virtual void Setup(const std::string& source, const std::string& uuid, const std::string& code,
                     const std::string& org, std::function<void(Status)> done) = 0;
  // Called after the webhook was stored and answered; must not block (work happens elsewhere).
  virtual void OnInstallationEvent(InstallationEvent event) = 0;
  // The organization slug stored for the installation ("" if unknown). Called on the I/O
  // threads for every webhook when routes read $installation.org: must be cheap and not block
  // on I/O.
  virtual std::string OrgOf(const std::string& source, const std::string& uuid) const = 0;
};

}  // namespace switchyard::ingest
