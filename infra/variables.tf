variable "cluster_name" {
  description = "The cluster's name (the spec's `name`): in every resource's name and tags."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.cluster_name))
    error_message = "cluster_name: a lowercase letter, then up to 30 lowercase letters, digits or dashes."
  }
}

variable "cluster_id" {
  description = "The cluster's random id (12 hex characters), made once by clusterkit up: tagged clusterkit:cluster-id on every resource, so `down` never takes another cluster of the same name."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{12}$", var.cluster_id))
    error_message = "cluster_id: 12 lowercase hex characters, as clusterkit writes it in the cluster's state folder (terraform/cluster-id)."
  }
}

variable "owner" {
  description = "The ARN of the AWS identity that makes the cluster (STS's caller at clusterkit up): tagged clusterkit:owner on every resource, so `clusterkit doctor` tells the operator's own cluster from another's in a shared account. Empty: no owner tag (a state made by an older kit)."
  type        = string
  default     = ""

  validation {
    condition     = var.owner == "" || (length(var.owner) <= 256 && can(regex("^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[^\\s]+$", var.owner)))
    error_message = "owner: an IAM or STS ARN (arn:aws:iam::123456789012:user/NAME, arn:aws:sts::123456789012:assumed-role/ROLE/SESSION) of at most 256 characters, as `aws sts get-caller-identity` prints it; or empty."
  }
}

variable "region" {
  description = "The AWS region, e.g. us-east-1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region: an AWS region name such as us-east-1 or eu-west-1."
  }
}

variable "master_instance_type" {
  description = "The master's EC2 instance type (the source project used t2.large: 2 vCPU, 8 GiB). Always on-demand: it holds HDFS's NameNode, the drivers and the NAT."
  type        = string
  default     = "t2.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.master_instance_type))
    error_message = "master_instance_type: an EC2 instance type such as t2.large or m5.large."
  }
}

variable "worker_instance_type" {
  description = "Every worker's EC2 instance type."
  type        = string
  default     = "t2.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.worker_instance_type))
    error_message = "worker_instance_type: an EC2 instance type such as t2.large or m5.large."
  }
}

variable "worker_market" {
  description = "How the workers are bought: on-demand, or spot (a persistent spot request each, stopped when AWS interrupts it, so the kit's stop and start still work). The master is always on-demand."
  type        = string
  default     = "on-demand"

  validation {
    condition     = contains(["on-demand", "spot"], var.worker_market)
    error_message = "worker_market: on-demand or spot."
  }

  # A persistent spot instance that terminates is launched again by its request, outside
  # Terraform: a poweroff from inside must stop a spot worker, never terminate it.
  validation {
    condition     = var.worker_market != "spot" || var.idle_action != "terminate"
    error_message = "worker_market = spot needs idle_action stop or record: a spot worker that terminates itself is launched again by its persistent spot request, outside Terraform and the kit."
  }
}

variable "worker_count" {
  description = "How many workers (private address only) join the master."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_count >= 1 && var.worker_count <= 8 && floor(var.worker_count) == var.worker_count
    error_message = "worker_count: a whole number from 1 to 8."
  }
}

variable "vpc_cidr" {
  description = "The VPC's address range."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) <= 24
    error_message = "vpc_cidr: an IPv4 CIDR block of /24 or larger, e.g. 10.0.0.0/16."
  }
}

variable "public_subnet_cidr" {
  description = "The public subnet (the master), inside vpc_cidr."
  type        = string
  default     = "10.0.1.0/24"

  validation {
    condition     = can(cidrnetmask(var.public_subnet_cidr))
    error_message = "public_subnet_cidr: an IPv4 CIDR block, e.g. 10.0.1.0/24."
  }
}

variable "private_subnet_cidr" {
  description = "The private subnet (the workers), inside vpc_cidr; its internet traffic goes through the master."
  type        = string
  default     = "10.0.2.0/24"

  validation {
    condition     = can(cidrnetmask(var.private_subnet_cidr))
    error_message = "private_subnet_cidr: an IPv4 CIDR block, e.g. 10.0.2.0/24."
  }
}

variable "root_volume_gb" {
  description = "Each node's root volume (gp3, encrypted), in GB."
  type        = number
  default     = 15

  validation {
    condition     = var.root_volume_gb >= 10 && var.root_volume_gb <= 1024
    error_message = "root_volume_gb: from 10 to 1024."
  }
}

variable "operator_cidr" {
  description = "The only addresses SSH (22) is open to: the operator's public IP as a /32, detected by clusterkit or given."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.operator_cidr)) && tonumber(split("/", var.operator_cidr)[1]) >= 16
    error_message = "operator_cidr: an IPv4 CIDR block of /16 or narrower, e.g. 81.2.69.160/32; never 0.0.0.0/0."
  }
}

variable "ami_family" {
  description = "The nodes' operating system: debian-12 (what the rehearsal runs) or ubuntu-24.04."
  type        = string
  default     = "debian-12"

  validation {
    condition     = contains(["debian-12", "ubuntu-24.04"], var.ami_family)
    error_message = "ami_family: debian-12 or ubuntu-24.04."
  }
}

variable "public_key" {
  description = "The operator's SSH public key (OpenSSH format), installed for the image's user and root."
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+", var.public_key))
    error_message = "public_key: an OpenSSH public key line (ssh-ed25519 AAAA...)."
  }
}

variable "availability_zone" {
  description = "The zone both subnets are in; null: the first zone of the region that offers both instance types."
  type        = string
  default     = null

  validation {
    condition     = var.availability_zone == null || can(regex("^${var.region}[a-z]$", var.availability_zone))
    error_message = "availability_zone: a zone of the region, e.g. us-east-1a."
  }
}

variable "ami_id" {
  description = "The image every node boots; null: the newest image of ami_family. clusterkit gives a made cluster's own image here when it applies again (clusterkit scale), so a newer image never replaces its nodes."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]+$", var.ami_id))
    error_message = "ami_id: an EC2 image id (ami- and hex digits), or null to look the image up."
  }
}

variable "idle_action" {
  description = "What the idle guard's poweroff of a node does: stop (the volumes are kept), terminate, or record (the guard only logs; a poweroff by hand stops)."
  type        = string
  default     = "stop"

  validation {
    condition     = contains(["stop", "terminate", "record"], var.idle_action)
    error_message = "idle_action: stop, terminate or record."
  }
}
